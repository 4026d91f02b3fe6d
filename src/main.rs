// Our own C `main` instead of Rust's: Rust's runtime would set SIGPIPE to SIG_IGN before ferrinit
// could see (and hand the child) the disposition it was really started with.
#![no_main]

#[unsafe(no_mangle)]
extern "C" fn main(argc: libc::c_int, argv: *const *const libc::c_char) -> libc::c_int {
    // SAFETY: argc and argv come straight from the C runtime.
    unsafe { ferrinit::main(argc, argv) }
}
