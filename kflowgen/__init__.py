"""kflowgen: declarative ML platform specs in, validated kustomize overlays for Argo CD out."""

__version__ = "0.1.0"
