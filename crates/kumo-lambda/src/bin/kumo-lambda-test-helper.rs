//! The sandbox helper, for this crate's tests (kumo's own binary is the helper in the server).
fn main() {
    kumo_sandbox::helper_main()
}
