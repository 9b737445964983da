"""The primitive operation kinds: every ``Cost`` counts them, every ``Convention`` weighs them."""
from __future__ import annotations

#: Primitive operation kinds a layer reports.  Conventions weigh exactly these.
OP_KINDS: dict[str, str] = {
    "mac": "multiply-accumulate inside a dot product (conv, linear, matmul, attention)",
    "dot": "dot products formed; a length-n dot product needs n-1 additions, not n",
    "bias": "bias additions after a dot product",
    "add": "elementwise addition or subtraction (also each step of a sum)",
    "mul": "elementwise multiplication (squares, scales)",
    "div": "division or reciprocal",
    "cmp": "comparison, max or min (ReLU, clamps, max pooling)",
    "fn": "transcendental function evaluation (exp, sqrt, tanh, erf)",
}
