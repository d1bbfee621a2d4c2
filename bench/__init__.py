"""Load generator and side-by-side comparisons with peers."""
