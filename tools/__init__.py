"""Build-time generators: files in the repository made from the code, and checks that they match.

    python -m tools.completions --write   # completions/ from the command tree
    python -m tools.errors_doc --write    # docs/errors.md and the README's error table

Not part of the ``tether`` package: nothing at run time imports them.
"""
