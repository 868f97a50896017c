//! `ipckit-top`: the command line. Parsing and dispatch live in the library.
fn main() {}
