"""What a correct implementation may do: the bound tiers (rigorous and sharp) and the correct
conventions whose emulations sharpen them."""
