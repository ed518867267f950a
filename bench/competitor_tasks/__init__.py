"""Task modules the Celery and Dramatiq benchmark workers import (see bench/competitors.py)."""
