"""Ray's ``ray.util`` names that lineagerun supports."""
