"""Generated from proto/millstream/v1 by scripts/gen-proto; do not edit."""
