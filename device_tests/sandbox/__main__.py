"""``python -m device_tests.sandbox``: print the protections a sandbox child achieves here (as JSON)."""

import json

from device_tests.sandbox.client import probe_protections

print(json.dumps(probe_protections().model_dump(), indent=2))
