"""Every lesson, in the order the navigation lists them; adding one is a module and one line here."""

from workbench.lessons.base import Lesson
from workbench.lessons.data_needed import HowManyPictures
from workbench.lessons.domain_shift import WhenTheWorldChanges
from workbench.lessons.freezing import HowMuchToFreeze
from workbench.lessons.looking import WhatTheNetworkLooksAt
from workbench.lessons.meta import LearningToLearn
from workbench.lessons.smaller import SmallerAndFaster
from workbench.lessons.transfer import WhatTransferBuys

LESSONS: dict[str, Lesson] = {lesson.id: lesson for lesson in (
    WhatTransferBuys(), HowMuchToFreeze(), HowManyPictures(), WhenTheWorldChanges(), SmallerAndFaster(),
    WhatTheNetworkLooksAt(), LearningToLearn())}
