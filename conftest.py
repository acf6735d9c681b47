"""Settings shared by every test directory (at the root, so no test folder such as
tests/providers shadows a package of the same name on sys.path)."""

from __future__ import annotations

import os

from hypothesis import settings

# The test command (hack/test.sh, and so CI) runs property tests derandomized: the same
# examples every run, so a result can be reproduced and CI cannot fail by the luck of the
# draw. Run pytest directly (profile "explore") to search new examples.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "explore"))
