"""The package's version, in a module of its own: any layer can read it without importing the package's facade."""

VERSION = "0.1.0"
