"""The tamper-evident alert trail: chains of alert links (chain.py), their topics (topic.py)
and the auditor's check (verify.py, `stream-app audit verify`)."""
