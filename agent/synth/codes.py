"""Codes the synthetic practices use: INDICATORS.md's codelists, and noise around them.

The noise codes are digit strings in the shape of SNOMED CT concept ids that are in no
codelist of the standard set, so that "codes in no codelist" has something to count.
"""

from __future__ import annotations

DIABETES = ("44054006", "46635009", "73211009")
DIABETES_WEIGHTS = (0.80, 0.08, 0.12)
DIABETES_RESOLVED = "315051004"
HBA1C = "999791000000106"
HYPERTENSION = ("59621000", "38341003")
HYPERTENSION_WEIGHTS = (0.7, 0.3)
HYPERTENSION_RESOLVED = "162659009"
SYSTOLIC = ("271649006", "72313002")
DIASTOLIC = ("271650006", "1091811000000102")
ASTHMA = "195967001"
ASTHMA_RESOLVED = "162660004"
ASTHMA_REVIEW = ("394700004", "270442000")
FLU = "822851000000102"
SMOKER, EX_SMOKER, NEVER_SMOKED = "77176002", "8517006", "266919005"
CERVICAL = "171149006"

# Noise with a numeric value: (code, mean, sd), e.g. body weight, BMI, cholesterol, pulse.
VALUED_NOISE = (
    ("27113001", 76.0, 16.0),
    ("60621009", 27.0, 5.0),
    ("1005671000000105", 5.0, 1.1),
    ("78564009", 74.0, 12.0),
)
# Noise without a value: a fixed, reproducible set of digit strings in no codelist.
PLAIN_NOISE = tuple(str(100_000_000 + 7_919 * i) for i in range(1, 161))

# (dm+d product code, BNF presentation code) by the group that drives a practice trait.
ANTIBIOTICS = (
    ("323509002", "0501013B0AAABAB"),
    ("324357003", "0501030I0AAABAB"),
    ("376697001", "0501130R0AAAAAA"),
    ("324133008", "0501050B0AAAAAA"),
    ("323640006", "0501012G0AAAAAA"),
)
ASTHMA_INHALERS = (
    ("320129001", "0301011R0AAAPAP"),
    ("320184003", "0302000C0AAAAAA"),
    ("320226006", "0302000N0AAAAAA"),
)
DIABETES_DRUGS = (("325278007", "0601022B0AAABAB"), ("325238002", "0601021M0AAAAAA"))
HYPERTENSION_DRUGS = (
    ("319283006", "0206020A0AAAAAA"),
    ("318900002", "0205051R0AAAAAA"),
    ("317919004", "0202010B0AAAAAA"),
)
OTHER_DRUGS = (
    ("322236009", "0407010H0AAAMAM"),
    ("320000009", "0212000B0AAAAAA"),
    ("317335000", "0103050P0AAAAAA"),
    ("321949006", "0403030Q0AAAAAA"),
    ("330705001", "1310012F0AAAAAA"),
    ("3412711000001106", "0906040G0AAAAAA"),
    ("322280009", "0407010F0AAAAAA"),
    ("317972003", "0206010F0AAAAAA"),
    ("330223005", "1302011C0AAAAAA"),
    ("321208008", "0402010J0AAAAAA"),
)
