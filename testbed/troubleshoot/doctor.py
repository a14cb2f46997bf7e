"""placeholder replaced below"""
from dataclasses import dataclass
@dataclass
class Finding:
    level: str
def doctor(cluster, target=None):
    return []
