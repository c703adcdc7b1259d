"""Process group, device and backend from the environment; sharding plans; DMP wrapping."""
