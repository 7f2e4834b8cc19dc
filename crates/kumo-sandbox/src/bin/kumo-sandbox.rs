fn main() {
    kumo_sandbox::helper_main()
}
