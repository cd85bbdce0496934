"""Which known bug a failure matches: emulations of the bug classes, and the diagnosis that
compares a failing output with each of them."""
