"""The version of nexec, in a leaf module so that the command line can show it without
importing the package facade."""
__version__ = "0.1.0"
