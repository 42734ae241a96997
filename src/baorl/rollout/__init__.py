"""Rollouts: play episodes and record them."""
