"""The runtime: parameters in one flat buffer, an arena per plan, bound kernel calls."""
