//! Gives the shared library a SONAME, so that programs linked against an
//! installed libmemalloc.so record it by that name.
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libmemalloc.so");
}
