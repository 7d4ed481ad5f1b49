"""Hardware profiles (strict YAML) and the cost models that price counts on them."""
from .profile import Profile, Quantity, list_profiles, load_profile, load_profile_file
from .roofline import Roofline, roofline

__all__ = ["Profile", "Quantity", "Roofline", "list_profiles", "load_profile",
           "load_profile_file", "roofline"]
