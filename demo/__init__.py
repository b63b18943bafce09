"""`fatcontroller demo`: the product on its embedded sandbox, scripted (`scenario`) or interactive (`prompt`)."""
