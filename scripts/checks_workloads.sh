# The workloads of the checks' cost, sourced by scripts/checks_cost.sh (timed)
# and scripts/checks_callgrind.sh (callgrind), so that both measure the same
# list: "name|program and arguments", the counts passed through the caller's
# `div` (each script scales them its own way). Programs are bench/'s.
workloads=(
    "fixed-16|fixed 16 $(div 150e6)"
    "fixed-64|fixed 64 $(div 150e6)"
    "fixed-1024|fixed 1024 $(div 120e6)"
    "fixed-4096|fixed 4096 $(div 100e6)"
    "fixed-20000|fixed 20000 $(div 20e6)"
    "fixed-100000|fixed 100000 $(div 10e6)"
    "churn|churn $(div 12e6) 30000"
    "larson|larson 8 2000 $(div 100) 40000"
    "xmalloc|xmalloc 4 4 $(div 24e6)"
    "threads32|threads32 32 $(div 6e6)"
    "realloc|realloc $(div 6400) 64 64k $(div 192)"
    "large|large $(div 1200)"
    "mchurn|mchurn $(div 20e6) 10000"
    "medium-4|mthreads 4 $(div 16e6) 256 4k 64k u"
)
