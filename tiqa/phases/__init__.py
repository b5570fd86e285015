"""The phase drivers: one module per entry point in launch/ and config in configs/, each with
`run(config)`. A driver turns its ConfigDict into frozen settings and passes explicit values to
the library; nothing below this package sees a ConfigDict."""
