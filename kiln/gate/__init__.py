"""The compatibility gate: small rules over a Subject (lock, GPU profile, image spec, flag table), each
yielding findings with the fix. Pure: no engine, no network, no processes."""
