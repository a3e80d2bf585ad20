"""HTTP routes: parse, authorise, call into the domain, render."""
