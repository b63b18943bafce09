"""Peas: a pool of preview environments on ECS that people claim and deploy a pull request to."""
