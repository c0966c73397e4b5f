"""The embedded demo backends the shipped tap.conf starts."""
