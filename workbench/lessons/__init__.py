"""Lessons: ready-made live experiments that teach transfer learning, each explained with its own runs' numbers.

`LESSONS` lists them (one module each, `base.Lesson` is the contract); `LessonBook` keeps a registry's lessons on
disk (the class's predictions, each attempt's runs) and moves an attempt on; `make_handout` writes the one-page
handout; `estimate_seconds` says how long a lesson will take here.
"""

from workbench.lessons.base import Attempt, Chart, Lesson, Pictures, Results
from workbench.lessons.book import LessonBook, LessonError, check_token, get_lesson
from workbench.lessons.catalog import LESSONS
from workbench.lessons.handout import Handout, make_handout
from workbench.lessons.timing import estimate_seconds

__all__ = ["LESSONS", "Attempt", "Chart", "Handout", "Lesson", "LessonBook", "LessonError", "Pictures", "Results",
           "check_token", "estimate_seconds", "get_lesson", "make_handout"]
