"""What the user reads: the JSON report, Markdown and HTML renderings, reproducers and test
vectors. Reports read the audit's result; they never import the engine."""
