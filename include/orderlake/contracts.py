"""Data contracts shared by producers, Flume, the speed and batch layers and the tests.

Codes follow the Alibaba Tianchi Tmall (IJCAI-15, data_format1) files; see docs/ARCHITECTURE.md.
Nothing here does I/O: these are named constants and tiny pure mappings.
"""

from __future__ import annotations

from typing import Final

# --- Kafka topics -------------------------------------------------------------------------------
TOPIC_ACTIONS: Final = "tmall.user_actions"
TOPIC_PROFILES: Final = "tmall.user_profiles"
# Lines the Flume edge guard refused (too large for Kafka, not UTF-8), wrapped in a JSON envelope
# with a reason: visible and countable instead of wedging the collector or vanishing.
TOPIC_REJECTS: Final = "tmall.rejects"
ALL_TOPICS: Final = (TOPIC_ACTIONS, TOPIC_PROFILES, TOPIC_REJECTS)

# --- Spool layout: <spool>/<host>/<file> ---------------------------------------------------------
ACTIONS_FILE: Final = "actions.log"
PROFILES_FILE: Final = "profiles.log"

# --- Codes ----------------------------------------------------------------------------------------
ACTION_CLICK, ACTION_CART, ACTION_PURCHASE, ACTION_FAVOURITE = 0, 1, 2, 3
ACTION_NAMES: Final = {0: "click", 1: "add-to-cart", 2: "purchase", 3: "add-to-favourite"}

UNKNOWN: Final = "unknown"
AGE_BRACKETS: Final = ("<18", "18-24", "25-29", "30-34", "35-39", "40-49", ">=50", UNKNOWN)
GENDERS: Final = ("female", "male", UNKNOWN)

_AGE_BY_CODE: Final = {
    1: "<18",
    2: "18-24",
    3: "25-29",
    4: "30-34",
    5: "35-39",
    6: "40-49",
    7: ">=50",
    8: ">=50",
}
_GENDER_BY_CODE: Final = {0: "female", 1: "male"}


def age_bracket(age_range: int | None) -> str:
    """Map a Tianchi age_range code to its bracket label; 0, null and unknown codes are 'unknown'.

    >>> age_bracket(3), age_bracket(8), age_bracket(None)
    ('25-29', '>=50', 'unknown')
    """
    return _AGE_BY_CODE.get(age_range, UNKNOWN) if age_range is not None else UNKNOWN


def gender_label(gender: int | None) -> str:
    """Map a Tianchi gender code to its label; 2, null and unknown codes are 'unknown'."""
    return _GENDER_BY_CODE.get(gender, UNKNOWN) if gender is not None else UNKNOWN


# --- Reference figures of the full Tianchi user_log_format1 / user_info_format1 -------------------
# Published figures (DESIGN.md section 6); the generator reproduces these marginals at any scale.
FULL_LOG_ROWS: Final = 54_925_330
FULL_USERS: Final = 424_170
ACTIONS_BY_TYPE: Final = {0: 48_550_713, 1: 76_750, 2: 3_292_144, 3: 3_005_723}
# key None = the field is empty in the CSV
USERS_BY_AGE_CODE: Final = {
    0: 92_914,
    1: 24,
    2: 52_871,
    3: 111_654,
    4: 79_991,
    5: 40_777,
    6: 35_464,
    7: 6_992,
    8: 1_266,
    None: 2_217,
}
USERS_BY_GENDER_CODE: Final = {0: 285_638, 1: 121_670, 2: 10_426, None: 6_436}
PURCHASES_BY_AGE_CODE: Final = {
    0: 584_369,
    1: 96,
    2: 295_262,
    3: 865_659,
    4: 769_541,
    5: 396_683,
    6: 308_718,
    7: 53_932,
    8: 9_631,
    None: 8_253,  # the remainder of the 3,292,144 purchases
}
PURCHASES_BY_GENDER_CODE: Final = {0: 2_329_907, 1: 811_342, 2: 122_478, None: 28_417}
DOUBLE11_ROWS: Final = 10_582_633
DOUBLE11_PURCHASES: Final = 1_223_354
TIANCHI_YEAR: Final = 2015
