"""course_utils: the helper package of the 'Generate, Position, Adapt' LLM course."""
from .config import ModelConfig
from .device import pick_device
from .loading import load_model
from .model import KVCache, LlamaModel
from .seeding import seed_everything

__all__ = ["load_model", "pick_device", "seed_everything", "LlamaModel", "ModelConfig", "KVCache"]
