"""docs/python_peak_check.py FOLDED -- sums a symbolized peak profile of
docs/profile_python.py by the kind of object each stack makes (innermost
frame that names it), to compare with the sizes the program prints."""
import collections,sys
cat=collections.Counter(); tot=0
for l in open(sys.argv[1]):
    st,_,v=l.rstrip().rpartition(' ')
    v=int(v); tot+=v
    fr=[f.split(' ')[0] for f in reversed(st.split(';'))]  # innermost first
    name='other'
    for i,f in enumerate(fr):
        if f=='unicode_decode_utf8': name='text (str)'
        elif f=='PyLong_FromString': name='ints'
        elif f=='PyFloat_FromString': name='floats'
        elif f in ('new_keys_object','new_dict'): name='dicts'
        elif f=='scanstring_unicode':
            name='name/email strs' if fr[i+1]=='_parse_object_unicode' else 'tag strs'
        elif f in ('PyList_New','list_resize'): name='lists'
        else: continue
        break
    cat[name]+=v
for k,v in cat.most_common(): print("%-16s %5.1f MiB" % (k, v/2**20))
print("%-16s %5.1f MiB" % ('total', tot/2**20))
