"""Stage 7, follow-up: registration and differencing of two X-rays of one patient."""

from .pairs import FollowupDiff, PairError, Registration, diff_pair, register, write_diff_dir

__all__ = ["FollowupDiff", "PairError", "Registration", "diff_pair", "register", "write_diff_dir"]
