"""The fleet tests: the README's several-hosts example as separate hosts on this machine."""
