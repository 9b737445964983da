"""Cost as formulas in a model's own hyperparameters (width, depth, heads, vocabulary …) and its input's symbols.

``derive_config(target, input_shape, config)`` traces the model (``symcost.trace``: exact formulas in the input's
symbols) at several configurations and fits every total as a polynomial in the configuration symbols:

1. **Probe** each symbolic field alone (the others at a base value): six values, and the narrowest window of
   exponents (``lo <= e < lo + width``; ``lo = -1`` only for a divisor such as the number of heads) whose exact
   interpolant through the first points passes through the rest.  A field no window up to degree 4 explains is
   refused, by name.
2. **Fit** on the tensor grid of the windows: one trace per grid point, one exact rational Vandermonde inverse per
   axis.  Coefficients are expressions in the input symbols, so ``L**2`` terms and floors in ``R`` pass through.
   With a symbolic input this is done sparsely first: the terms (monomials in the config symbols) are found at a
   concrete input size, one field at a time (``_support``), and their coefficients as expressions in the input
   symbols come from concrete traces at a few more input sizes, in the functions of the input's symbols that one
   symbolic trace shows (``_reconstructed``); where any of that fails its own checks, one symbolic trace per term,
   then the whole grid of symbolic traces.
3. **Verify** at ``checks`` random configurations off the grid (other residues): every total under every
   convention must equal a fresh trace exactly, else the derivation is refused naming the fields.

Sample configurations satisfy the divisibility relations (``head_dim = hidden_size / num_attention_heads``), which
become the formula's conditions: values that break one are refused with that condition.

``backward=True`` traces one training step (``trace(..., backward=True)``) and fits the step's totals and its
backward part side by side; the forward part is their difference, exactly.
"""
from .config_cost import ConfigCost, confirm
from .derivation import derive_config, fit_totals, probe_values
from .space import parse_config

__all__ = ["ConfigCost", "confirm", "derive_config", "fit_totals", "parse_config", "probe_values"]
