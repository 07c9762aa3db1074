"""The lock stage: resolving versions.lock's [packages] from its inputs (uv, the package index), writing
it back with its comments kept, and checking that it is current and agrees with itself."""
