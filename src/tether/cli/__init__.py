"""Typer commands and Rich output: parse, wire, render."""
