"""The result cache: task results on diskcache under the home, signed and fork-safe."""
