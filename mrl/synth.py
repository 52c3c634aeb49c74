"""A synthetic formulation lab with a hidden ground truth.

No public data set holds cosmetic formulas, so mrl ships a deterministic "virtual lab". It invents a catalogue of
raw materials, writes formulas the way a cosmetics lab does, and "measures" their viscosity with a hidden rule.
Because the rule is known, tests and reports can check whether learned material vectors mean something.

The catalogue
    Materials come in families (``solvent``, ``thickener``, ``emollient``, ``emulsifier``, ``humectant``,
    ``electrolyte``, ``neutralizer``, ``active``, ``preservative``, ``fragrance``, ``pigment``). Each material has
    hidden properties *per unit of content* (the ``truth`` table, never shown to a model):

    * ``thickening``  - power of a non-ionic polymer or gum (xanthan, cellulose, clays...).
    * ``carbomer``    - power of an acidic polymer (carbomer type) that only swells once neutralised.
    * ``acid``        - acid that consumes base (the carbomer's own acid groups, citric acid, AHAs...).
    * ``neutralizer`` - base capacity (sodium hydroxide, triethanolamine, arginine...).
    * ``salt``        - ionic strength it brings (sodium chloride, salts inside surfactants...).
    * ``oil``         - share of oil phase (oils, esters, waxes, fragrance oils).
    * ``emulsifier``  - emulsifying power.
    * ``structurant`` - ability to build a lamellar gel network with an emulsifier (fatty alcohols, waxes).
    * ``surfactant``  - micelle-forming cleansing surfactant (shampoo bases).
    * ``humectant``   - glycerin-like thickening of the water phase.
    * ``alcohol``     - ethanol-like solvent that thins polymer gels and breaks up micelles.
    * ``solids``      - volume of dispersed particles (pigments, fillers).
    * ``idio_0..``    - a few small material-specific effects with no chemical story, so that a model with more
      dimensions per material can do better than one that only captures the chemistry above.

    Usage is long-tailed: water, glycerin and phenoxyethanol appear in most formulas; inside each family a few
    favourites are used often and most materials appear in only a handful of formulas (Zipf-like popularity).

The formulas
    Each formula follows a product template (toner, serum, gel, lotion, cream, shampoo). A template lists
    family slots, each with a chance of being present, a number of materials and a dose range (thickeners,
    salts and neutralisers below 1-2 %, surfactants 5-15 %, actives from 0.005 %). Bases are dosed like a
    formulator titrating to pH: in proportion to the acid in the formula (mostly near full neutralisation,
    sometimes under or over). Water (sometimes a floral water) is the balance, 60-95 % (very light formulas are
    topped up with glycerin, heavy ones scaled down). Contents are in % with 4 decimals and sum to exactly 100.

The hidden viscosity rule
    First every hidden property is summed over the formula, weighted by content fraction (0.5 % carbomer adds
    0.005 x its carbomer power). The viscosity then depends on these sums only:

    * the water phase gets thicker with humectants (glycerin) and a little with alcohol;
    * the polymer load is the gum power plus the carbomer power times its degree of neutralisation (base versus
      acid: an un-neutralised carbomer barely thickens). Ionic strength (salts and excess base) collapses
      carbomer gels strongly and gums mildly; alcohol weakens them. Viscosity grows steeply with polymer load;
    * oil is only emulsified if there is enough emulsifier (half of it with emulsifier at 5 % of the oil,
      nearly all from 15 %). Emulsified droplets and pigments crowd the system (Krieger-Dougherty); fatty
      alcohols with an emulsifier build a gel network (creams); oil left un-emulsified separates and destroys
      structure;
    * surfactants thicken with salt up to an optimum, then thin again (the classic shampoo salt curve); oil and
      alcohol disturb the micelles;
    * polymer, gel-network and micelle viscosities add up; everything is computed in log10(cP), plus the
      material-specific effects (stronger in structured products), softly capped near 150,000 cP and floored
      near water's 1 cP, then exponentiated and multiplied by a 4 % measurement noise.

    Because the rule only sees content-weighted sums of per-material vectors, a model that learns one vector per
    material and feeds their content-weighted sum to a non-linear regressor is well specified. A thickener at
    0.5 % moves viscosity as much as the 80 % of water does, so material vectors must differ in scale a lot.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from mrl.data import FormulaData, load_formulas
from mrl.io import write_table

log = logging.getLogger(__name__)

#: Hidden chemical properties (truth columns, per unit content fraction), in the order used by the rule.
LATENTS: tuple[str, ...] = (
    "thickening", "carbomer", "acid", "neutralizer", "salt", "oil", "emulsifier", "structurant", "surfactant",
    "humectant", "alcohol", "solids",
)
FAMILIES: tuple[str, ...] = (
    "solvent", "thickener", "emollient", "emulsifier", "humectant", "electrolyte", "neutralizer", "active",
    "preservative", "fragrance", "pigment",
)
_L = {name: i for i, name in enumerate(LATENTS)}


@dataclass(frozen=True)
class LabPreset:
    """Size and knobs of a synthetic lab.

    Attributes:
        name: label (``data.name`` becomes ``lab_<name>``).
        n_materials: size of the material catalogue.
        n_formulas: number of formulas (one viscosity measurement each).
        min_ingredients, max_ingredients: bounds on the number of ingredients per formula (balance included).
        complexity: multiplies the maximum count of the open-ended slots (actives, fragrance, oils).
        zipf_alpha: exponent of the within-family popularity law (larger: more concentrated usage).
        noise: standard deviation of the multiplicative measurement noise (natural log units).
        n_idio: number of material-specific random effect dimensions.
        idio_scale: size of one material's idiosyncratic effect at its typical dose (before the tanh).
        p_water: probability that the balance solvent is water (otherwise a floral water).
    """

    name: str
    n_materials: int
    n_formulas: int
    min_ingredients: int = 5
    max_ingredients: int = 40
    complexity: float = 1.0
    zipf_alpha: float = 1.2
    noise: float = 0.04
    n_idio: int = 4
    idio_scale: float = 0.1
    p_water: float = 0.92

    def __post_init__(self) -> None:
        if self.n_materials < 100:
            raise ValueError(f"LabPreset {self.name!r}: n_materials must be >= 100, got {self.n_materials}")
        if self.n_formulas < 1:
            raise ValueError(f"LabPreset {self.name!r}: n_formulas must be >= 1, got {self.n_formulas}")
        if not 5 <= self.min_ingredients <= self.max_ingredients:
            raise ValueError(f"LabPreset {self.name!r}: need 5 <= min_ingredients <= max_ingredients")


PRESETS: dict[str, LabPreset] = {
    "small": LabPreset("small", n_materials=300, n_formulas=3000, max_ingredients=40, complexity=1.0),
    "seed-scale": LabPreset("seed-scale", n_materials=5400, n_formulas=25000, max_ingredients=60, complexity=1.8),
}


# --------------------------------------------------------------------------------------------------- catalogue
@dataclass(frozen=True)
class _Kind:
    """A sub-family of materials sharing a hidden-property profile."""

    name: str
    family: str
    share: float  # share of the catalogue; 0 for a single fixed material
    minimum: int  # at least this many materials
    dose: float  # typical use level in % (sets the size of the idiosyncratic effect per unit content)
    latents: tuple[tuple[str, float, float, float], ...]  # (latent, P(non-zero), median, log-sd)
    stems: tuple[str, ...]


_KINDS: tuple[_Kind, ...] = (
    _Kind("water", "solvent", 0.0, 1, 80.0, (), ("Water",)),
    _Kind("hydrosol", "solvent", 0.005, 2, 80.0, (("humectant", 0.2, 0.05, 0.5),),
          ("Rose Water", "Witch Hazel Water", "Orange Flower Water", "Aloe Leaf Juice", "Cucumber Water")),
    _Kind("glycol", "solvent", 0.008, 3, 3.0, (("humectant", 1.0, 0.6, 0.3), ("alcohol", 0.3, 0.3, 0.4)),
          ("Propanediol", "Butylene Glycol", "Pentylene Glycol", "Dipropylene Glycol", "Hexylene Glycol")),
    _Kind("alcohol", "solvent", 0.002, 1, 15.0, (("alcohol", 1.0, 1.0, 0.1),),
          ("Ethanol", "Alcohol Denat.", "Isopropyl Alcohol")),
    _Kind("carbomer", "thickener", 0.008, 4, 0.4, (("carbomer", 1.0, 3000.0, 0.35), ("acid", 1.0, 1.0, 0.15)),
          ("Carbomer", "Acrylates Crosspolymer", "Acrylates/C10-30 Alkyl Acrylate Crosspolymer")),
    _Kind("gum", "thickener", 0.015, 6, 0.3, (("thickening", 1.0, 1200.0, 0.5), ("salt", 0.2, 0.3, 0.5)),
          ("Xanthan Gum", "Hydroxyethylcellulose", "Sclerotium Gum", "Guar Gum", "Cellulose Gum", "Gellan Gum",
           "Hydroxypropyl Methylcellulose")),
    _Kind("oil", "emollient", 0.08, 10, 3.0, (("oil", 1.0, 1.0, 0.05), ("structurant", 0.1, 20.0, 0.5)),
          ("Caprylic/Capric Triglyceride", "Isopropyl Myristate", "Squalane", "Jojoba Oil", "Dimethicone",
           "Coco-Caprylate", "Sunflower Seed Oil", "Isononyl Isononanoate", "Argan Oil", "Cyclopentasiloxane")),
    _Kind("wax", "emollient", 0.02, 4, 2.0,
          (("oil", 1.0, 1.0, 0.05), ("structurant", 1.0, 400.0, 0.4), ("emulsifier", 0.2, 0.2, 0.5)),
          ("Cetearyl Alcohol", "Cetyl Alcohol", "Stearyl Alcohol", "Behenyl Alcohol", "Beeswax", "Shea Butter",
           "Candelilla Wax")),
    _Kind("emulsifier", "emulsifier", 0.03, 6, 2.0,
          (("emulsifier", 1.0, 1.0, 0.3), ("oil", 0.5, 0.4, 0.4), ("structurant", 0.4, 80.0, 0.5)),
          ("Glyceryl Stearate", "Polysorbate", "PEG-100 Stearate", "Cetearyl Glucoside", "Sorbitan Olivate",
           "Polyglyceryl-3 Diisostearate", "Steareth")),
    _Kind("anionic", "emulsifier", 0.008, 3, 10.0,
          (("surfactant", 1.0, 1.0, 0.25), ("emulsifier", 1.0, 0.4, 0.3), ("salt", 0.7, 0.05, 0.4)),
          ("Sodium Laureth Sulfate", "Sodium Lauroyl Sarcosinate", "Sodium Cocoyl Isethionate",
           "Ammonium Lauryl Sulfate", "Sodium C14-16 Olefin Sulfonate")),
    _Kind("amphoteric", "emulsifier", 0.005, 2, 4.0,
          (("surfactant", 1.0, 0.6, 0.25), ("emulsifier", 1.0, 0.3, 0.3), ("salt", 0.8, 0.1, 0.4)),
          ("Cocamidopropyl Betaine", "Sodium Cocoamphoacetate", "Lauryl Betaine", "Coco-Glucoside")),
    _Kind("glycerin", "humectant", 0.0, 1, 4.0, (("humectant", 1.0, 1.0, 0.0),), ("Glycerin",)),
    _Kind("humectant", "humectant", 0.015, 4, 2.0,
          (("humectant", 1.0, 1.0, 0.3), ("thickening", 0.06, 80.0, 0.5), ("salt", 0.15, 0.5, 0.4)),
          ("Sodium Hyaluronate", "Sorbitol", "Urea", "Sodium PCA", "Betaine", "Panthenol", "Trehalose")),
    _Kind("salt", "electrolyte", 0.004, 3, 0.8, (("salt", 1.0, 1.0, 0.3),),
          ("Sodium Chloride", "Magnesium Sulfate", "Potassium Chloride", "Sodium Citrate", "Magnesium Chloride")),
    _Kind("base", "neutralizer", 0.003, 2, 0.3, (("neutralizer", 1.0, 1.2, 0.45), ("salt", 0.3, 0.2, 0.4)),
          ("Sodium Hydroxide", "Triethanolamine", "Aminomethyl Propanol", "Arginine", "Tromethamine")),
    _Kind("acid", "neutralizer", 0.004, 2, 0.2, (("acid", 1.0, 1.2, 0.3), ("salt", 0.2, 0.2, 0.4)),
          ("Citric Acid", "Lactic Acid", "Gluconolactone", "Malic Acid")),
    _Kind("active", "active", -1.0, 10, 0.3,  # share -1: takes the rest of the catalogue
          (("acid", 0.06, 1.0, 0.3), ("humectant", 0.25, 0.8, 0.4), ("salt", 0.12, 0.5, 0.5),
           ("thickening", 0.04, 150.0, 0.5), ("oil", 0.2, 0.8, 0.2), ("alcohol", 0.03, 0.5, 0.3)),
          ("Niacinamide", "Green Tea Extract", "Centella Asiatica Extract", "Allantoin", "Peptide Complex",
           "Caffeine", "Ectoin", "Adenosine", "Chamomile Extract", "Licorice Root Extract")),
    _Kind("phenoxyethanol", "preservative", 0.0, 1, 0.8, (("alcohol", 1.0, 0.5, 0.0), ("oil", 1.0, 0.3, 0.0)),
          ("Phenoxyethanol",)),
    _Kind("preservative", "preservative", 0.012, 3, 0.4,
          (("alcohol", 0.3, 0.5, 0.3), ("salt", 0.3, 0.6, 0.3), ("acid", 0.2, 0.8, 0.3), ("oil", 0.3, 0.5, 0.3)),
          ("Ethylhexylglycerin", "Sodium Benzoate", "Potassium Sorbate", "Benzyl Alcohol", "Caprylyl Glycol",
           "Dehydroacetic Acid", "Chlorphenesin")),
    _Kind("fragrance", "fragrance", 0.2, 8, 0.1, (("oil", 0.9, 1.0, 0.05), ("alcohol", 0.2, 0.5, 0.3)),
          ("Parfum", "Essential Oil Blend", "Linalool", "Limonene", "Citronellol", "Geraniol", "Fragrance Accord")),
    _Kind("pigment", "pigment", 0.03, 4, 1.5,
          (("solids", 1.0, 0.4, 0.5), ("thickening", 0.2, 60.0, 0.5), ("oil", 0.1, 0.2, 0.3)),
          ("Titanium Dioxide", "Iron Oxides", "Mica", "Zinc Oxide", "Kaolin", "Talc", "Boron Nitride")),
)
_KIND_INDEX = {k.name: i for i, k in enumerate(_KINDS)}
#: Name stems for materials whose profile calls for a more telling name than the kind's default stems.
_SPECIAL_STEMS = {
    ("carbomer", "neutralizer"): ("Sodium Polyacrylate", "Sodium Acrylates Copolymer"),
    ("active", "acid"): ("Glycolic Acid", "Salicylic Acid", "Mandelic Acid", "Ascorbic Acid", "Azelaic Acid"),
    ("active", "thickening"): ("Beta-Glucan", "Hyaluronic Acid Complex", "Tremella Extract"),
    ("active", "salt"): ("Sodium Ascorbyl Phosphate", "Zinc PCA", "Magnesium Ascorbyl Phosphate"),
    ("active", "oil"): ("Tocopherol", "Retinol", "Bakuchiol", "Ceramide NP", "Rosehip Oil Extract"),
    ("pigment", "thickening"): ("Bentonite", "Hectorite", "Silica", "Magnesium Aluminum Silicate"),
}

# --------------------------------------------------------------------------------------------------- templates
#: Open-ended kinds: their slots stretch with ``complexity`` and, in this order, give up (or gain) ingredients
#: to keep the ingredient count inside the preset's bounds.
_FLEX_ORDER = ("active", "fragrance", "oil")
#: Template -> (weight, slots); a slot is (kind, P(present), n_lo, n_hi, dose_lo %, dose_hi %).
_Slot = tuple[str, float, int, int, float, float]
_TEMPLATES: dict[str, tuple[float, tuple[_Slot, ...]]] = {
    "toner": (0.12, (
        ("glycerin", 0.8, 1, 1, 1.0, 5.0), ("humectant", 0.8, 1, 3, 0.5, 4.0),
        ("glycol", 0.6, 1, 2, 1.0, 5.0), ("active", 1.0, 2, 8, 0.005, 1.0),
        ("phenoxyethanol", 0.8, 1, 1, 0.3, 1.0), ("preservative", 0.6, 1, 2, 0.05, 0.6),
        ("fragrance", 0.5, 1, 4, 0.01, 0.2), ("emulsifier", 0.4, 1, 1, 0.1, 1.0),
        ("acid", 0.4, 1, 1, 0.01, 0.2), ("salt", 0.1, 1, 1, 0.02, 0.3),
        ("gum", 0.15, 1, 1, 0.01, 0.08), ("alcohol", 0.1, 1, 1, 2.0, 15.0),
    )),
    "serum": (0.15, (
        ("glycerin", 0.85, 1, 1, 1.0, 6.0), ("humectant", 0.9, 1, 4, 0.5, 5.0),
        ("glycol", 0.5, 1, 2, 1.0, 5.0), ("gum", 0.75, 1, 2, 0.05, 0.6),
        ("carbomer", 0.3, 1, 1, 0.05, 0.4), ("base", 0.35, 1, 1, 0.02, 0.4),
        ("active", 1.0, 3, 12, 0.005, 3.0), ("phenoxyethanol", 0.8, 1, 1, 0.3, 1.0),
        ("preservative", 0.6, 1, 2, 0.05, 0.6), ("fragrance", 0.3, 1, 4, 0.01, 0.15),
        ("salt", 0.1, 1, 1, 0.02, 0.3), ("acid", 0.2, 1, 1, 0.01, 0.3),
        ("emulsifier", 0.3, 1, 1, 0.1, 1.0), ("oil", 0.2, 1, 3, 0.1, 2.0),
    )),
    "gel": (0.15, (
        ("carbomer", 0.95, 1, 2, 0.1, 0.6), ("gum", 0.35, 1, 1, 0.05, 0.5),
        ("base", 0.9, 1, 1, 0.1, 0.8), ("glycerin", 0.8, 1, 1, 1.0, 6.0),
        ("humectant", 0.6, 1, 3, 0.5, 4.0), ("glycol", 0.4, 1, 2, 1.0, 5.0),
        ("alcohol", 0.2, 1, 1, 3.0, 30.0), ("active", 0.85, 1, 10, 0.005, 2.0),
        ("phenoxyethanol", 0.8, 1, 1, 0.3, 1.0), ("preservative", 0.5, 1, 2, 0.05, 0.6),
        ("fragrance", 0.4, 1, 5, 0.01, 0.3), ("salt", 0.15, 1, 1, 0.02, 0.8),
        ("acid", 0.15, 1, 1, 0.01, 0.3),
    )),
    "lotion": (0.2, (
        ("oil", 1.0, 2, 8, 0.5, 6.0), ("wax", 0.9, 1, 2, 0.8, 4.0),
        ("emulsifier", 1.0, 1, 3, 0.5, 3.0), ("gum", 0.6, 1, 2, 0.05, 0.4),
        ("carbomer", 0.35, 1, 1, 0.05, 0.3), ("base", 0.4, 1, 1, 0.02, 0.4),
        ("glycerin", 0.9, 1, 1, 1.0, 5.0), ("humectant", 0.6, 1, 3, 0.5, 4.0),
        ("glycol", 0.3, 1, 2, 1.0, 4.0), ("active", 0.9, 2, 12, 0.005, 2.0),
        ("phenoxyethanol", 0.85, 1, 1, 0.3, 1.0), ("preservative", 0.6, 1, 2, 0.05, 0.6),
        ("fragrance", 0.7, 1, 6, 0.01, 0.3), ("pigment", 0.15, 1, 3, 0.1, 3.0),
        ("salt", 0.08, 1, 1, 0.02, 0.3), ("acid", 0.2, 1, 1, 0.01, 0.3),
    )),
    "cream": (0.18, (
        ("oil", 1.0, 3, 10, 0.5, 8.0), ("wax", 1.0, 1, 2, 1.5, 4.0),
        ("emulsifier", 1.0, 1, 4, 1.0, 4.0), ("gum", 0.5, 1, 2, 0.05, 0.5),
        ("carbomer", 0.25, 1, 1, 0.05, 0.3), ("base", 0.3, 1, 1, 0.02, 0.4),
        ("glycerin", 0.9, 1, 1, 2.0, 7.0), ("humectant", 0.6, 1, 3, 0.5, 4.0),
        ("active", 0.95, 3, 15, 0.005, 3.0), ("phenoxyethanol", 0.85, 1, 1, 0.3, 1.0),
        ("preservative", 0.6, 1, 2, 0.05, 0.6), ("fragrance", 0.6, 1, 8, 0.01, 0.3),
        ("pigment", 0.3, 1, 5, 0.3, 8.0), ("salt", 0.08, 1, 1, 0.02, 0.3),
        ("acid", 0.2, 1, 1, 0.01, 0.3),
    )),
    "shampoo": (0.2, (
        ("anionic", 1.0, 1, 2, 4.0, 15.0), ("amphoteric", 0.8, 1, 2, 1.0, 6.0),
        ("salt", 0.85, 1, 1, 0.2, 2.5), ("gum", 0.2, 1, 1, 0.05, 0.5),
        ("glycerin", 0.5, 1, 1, 0.5, 3.0), ("humectant", 0.4, 1, 2, 0.1, 2.0),
        ("glycol", 0.3, 1, 1, 0.5, 3.0), ("active", 0.8, 1, 8, 0.005, 1.0),
        ("phenoxyethanol", 0.7, 1, 1, 0.3, 1.0), ("preservative", 0.8, 1, 2, 0.05, 0.6),
        ("fragrance", 0.95, 1, 8, 0.05, 1.0), ("acid", 0.7, 1, 1, 0.05, 0.5),
        ("oil", 0.3, 1, 2, 0.1, 1.0), ("emulsifier", 0.3, 1, 1, 0.2, 2.0),
    )),
}
#: Non-balance ingredients are rescaled to this total (in %) so that the balance stays within 60-95 %.
_OTHERS_RANGE = (5.01, 39.99)


def _resolve(preset: str | LabPreset) -> LabPreset:
    if isinstance(preset, LabPreset):
        return preset
    if preset not in PRESETS:
        raise ValueError(f"unknown lab preset {preset!r}; valid presets: {sorted(PRESETS)}")
    return PRESETS[preset]


def _kind_sizes(n_materials: int) -> np.ndarray:
    """Number of materials of each kind, summing to ``n_materials``."""
    sizes = np.array([max(k.minimum, round(k.share * n_materials)) if k.share >= 0 else 0 for k in _KINDS])
    rest = [i for i, k in enumerate(_KINDS) if k.share < 0][0]
    sizes[rest] = n_materials - sizes.sum()
    if sizes[rest] < _KINDS[rest].minimum:
        raise ValueError(f"n_materials={n_materials} is too small for the catalogue")
    return sizes


def _catalogue(preset: LabPreset, rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, dict]:
    """Invent the materials.

    Returns the truth table (material_id, name, family, kind, latents, idio), the popularity weight of each
    material inside its kind, its dose factor, and ``members[kind] -> material indices``.
    """
    sizes = _kind_sizes(preset.n_materials)
    kind_of = np.repeat(np.arange(len(_KINDS)), sizes)
    n = len(kind_of)
    z = np.zeros((n, len(LATENTS)))
    for ki, kind in enumerate(_KINDS):
        rows = np.flatnonzero(kind_of == ki)
        for latent, p, median, sd in kind.latents:
            on = rng.random(len(rows)) < p
            z[rows, _L[latent]] = on * median * np.exp(sd * rng.standard_normal(len(rows)))
        if kind.name == "carbomer":  # some acrylic thickeners come pre-neutralised (sodium polyacrylate)
            pre = rng.random(len(rows)) < 0.15
            z[rows[pre], _L["neutralizer"]] = z[rows[pre], _L["acid"]] * rng.uniform(0.9, 1.3, pre.sum())
    dose_factor = np.exp(0.4 * rng.standard_normal(n))
    fixed = np.array([_KINDS[k].share == 0 for k in kind_of])
    dose_factor[fixed] = 1.0
    typical = np.array([_KINDS[k].dose for k in kind_of]) / 100.0 * dose_factor
    idio = preset.idio_scale * rng.standard_normal((n, preset.n_idio)) / typical[:, None]
    idio[kind_of == _KIND_INDEX["water"]] = 0.0
    # popularity: Zipf over a random ranking inside each kind
    popularity = np.zeros(n)
    members: dict[int, np.ndarray] = {}
    for ki in range(len(_KINDS)):
        rows = np.flatnonzero(kind_of == ki)
        members[ki] = rows
        ranks = rng.permutation(len(rows)) + 1
        popularity[rows] = ranks.astype(float) ** -preset.zipf_alpha
    names = _names(kind_of, z, rng)
    # shuffle the catalogue so ids say nothing about the kind
    order = rng.permutation(n)
    inverse = np.empty(n, int)
    inverse[order] = np.arange(n)
    members = {ki: np.sort(inverse[rows]) for ki, rows in members.items()}
    truth = pd.DataFrame({
        "material_id": [f"M{i + 1:05d}" for i in range(n)],
        "name": np.asarray(names, dtype=object)[order],
        "family": [_KINDS[k].family for k in kind_of[order]],
        "kind": [_KINDS[k].name for k in kind_of[order]],
    })
    for j, latent in enumerate(LATENTS):
        truth[latent] = z[order, j]
    for j in range(preset.n_idio):
        truth[f"idio_{j}"] = idio[order, j]
    return truth, popularity[order], dose_factor[order], members


def _names(kind_of: np.ndarray, z: np.ndarray, rng: np.random.Generator) -> list[str]:
    """Pseudo-INCI names: a stem that fits the hidden profile plus a running number."""
    counters: dict[str, int] = {}
    names = []
    for i, ki in enumerate(kind_of):
        kind = _KINDS[ki]
        stems = kind.stems
        for (kname, latent), special in _SPECIAL_STEMS.items():
            if kname == kind.name and z[i, _L[latent]] > 0:
                stems = special
                break
        stem = stems[int(rng.integers(len(stems)))]
        if kind.share == 0:
            names.append(stem)
            continue
        counters[stem] = counters.get(stem, 0) + 1
        names.append(f"{stem} {counters[stem]:03d}")
    return names


# ---------------------------------------------------------------------------------------------------- formulas
def _pick(rng: np.random.Generator, weights: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row, draw ``counts[row]`` distinct positions with probability ~ ``weights`` (no replacement).

    Uses exponential keys (Efraimidis-Spirakis): the ``k`` smallest ``Exp(1) / w`` form a weighted sample.
    Returns (row index, position) of every draw, rows in order, draws in order of selection.
    """
    size = len(weights)
    active = np.flatnonzero(counts > 0)
    kmax = int(counts.max(initial=0))
    if kmax == 0:
        return np.zeros(0, int), np.zeros(0, int)
    inv_w = (1.0 / weights).astype(np.float32)
    chunk = max(1, 4_000_000 // size)
    rows_out, pos_out = [], []
    for start in range(0, len(active), chunk):
        c = counts[active[start:start + chunk]]
        k = int(c.max())
        keys = rng.standard_exponential((len(c), size), dtype=np.float32) * inv_w
        if k < size:
            part = np.argpartition(keys, k - 1, axis=1)[:, :k]
        else:
            part = np.broadcast_to(np.arange(size), (len(c), size))
        order = np.argsort(np.take_along_axis(keys, part, axis=1), axis=1, kind="stable")
        chosen = np.take_along_axis(part, order, axis=1)
        keep = np.arange(chosen.shape[1])[None, :] < c[:, None]
        rows_out.append(active[np.nonzero(keep)[0] + start])
        pos_out.append(chosen[keep])
    return np.concatenate(rows_out), np.concatenate(pos_out)


def _slot_counts(rng: np.random.Generator, preset: LabPreset, slots: tuple[_Slot, ...], n: int,
                 kind_sizes: dict[str, int]) -> np.ndarray:
    """Number of materials per (formula, slot), adjusted so each formula's total fits the preset's bounds."""
    counts = np.zeros((n, len(slots)), dtype=np.int64)
    for j, (kind, p, lo, hi, _, _) in enumerate(slots):
        if kind in _FLEX_ORDER:
            hi = max(lo, int(round(hi * preset.complexity)))
        hi = min(hi, kind_sizes[kind])
        lo = min(lo, hi)
        present = rng.random(n) < p
        u = rng.random(n)
        counts[:, j] = present * (lo + np.floor((hi - lo + 1) * u**2).astype(np.int64))  # skewed to few
    total = counts.sum(axis=1) + 1  # + balance solvent
    flex_cols = [j for name in _FLEX_ORDER for j, s in enumerate(slots) if s[0] == name]
    for j in flex_cols:  # too many ingredients: drop open-ended ones
        excess = np.maximum(total - preset.max_ingredients, 0)
        cut = np.minimum(excess, counts[:, j])
        counts[:, j] -= cut
        total -= cut
    for j in flex_cols:  # too few: add open-ended ones
        room = kind_sizes[slots[j][0]] - counts[:, j]
        add = np.minimum(np.maximum(preset.min_ingredients - total, 0), room)
        counts[:, j] += add
        total += add
    return counts


def _formulas(preset: LabPreset, rng: np.random.Generator, truth: pd.DataFrame, popularity: np.ndarray,
              dose_factor: np.ndarray, members: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Write the formulas. Returns entry arrays (formula index, material index, content %) and template index."""
    names = list(_TEMPLATES)
    weights = np.array([_TEMPLATES[t][0] for t in names])
    template = rng.choice(len(names), size=preset.n_formulas, p=weights / weights.sum())
    kind_sizes = {k.name: len(members[i]) for i, k in enumerate(_KINDS)}
    f_parts, m_parts, d_parts = [], [], []
    for ti, tname in enumerate(names):
        f_idx = np.flatnonzero(template == ti)
        slots = _TEMPLATES[tname][1]
        counts = _slot_counts(rng, preset, slots, len(f_idx), kind_sizes)
        for j, (kind, _, _, _, dlo, dhi) in enumerate(slots):
            mem = members[_KIND_INDEX[kind]]
            rows, pos = _pick(rng, popularity[mem], counts[:, j])
            mats = mem[pos]
            u = rng.random(len(mats))
            dose = np.exp(np.log(dlo) + u * np.log(dhi / dlo)) * dose_factor[mats]
            f_parts.append(f_idx[rows])
            m_parts.append(mats)
            d_parts.append(np.clip(dose, dlo, dhi))
    f = np.concatenate(f_parts)
    m = np.concatenate(m_parts)
    d = np.concatenate(d_parts)
    _cover_unused(rng, m, truth, members)
    _titrate(rng, f, m, d, truth, members, preset.n_formulas)
    # top very light formulas up with glycerin, scale heavy ones down, so the balance solvent stays in 60-95 %
    others = np.bincount(f, weights=d, minlength=preset.n_formulas)
    deficit = np.maximum(_OTHERS_RANGE[0] - others, 0.0)
    glycerin = members[_KIND_INDEX["glycerin"]][0]
    has_glycerin = np.zeros(preset.n_formulas, bool)
    has_glycerin[f[m == glycerin]] = True
    g_entries = np.flatnonzero(m == glycerin)
    d[g_entries] += deficit[f[g_entries]]
    room = np.bincount(f, minlength=preset.n_formulas) + 1 < preset.max_ingredients  # +1: the balance solvent
    add = np.flatnonzero((deficit > 0) & ~has_glycerin & room)
    f, m, d = np.concatenate([f, add]), np.concatenate([m, np.full(len(add), glycerin)]), np.concatenate([d, deficit[add]])
    others = np.bincount(f, weights=d, minlength=preset.n_formulas)
    scale = np.clip(others, *_OTHERS_RANGE) / others  # scales up only a full formula without glycerin (rare)
    d = np.maximum(np.round(d * scale[f], 4), 1e-4)
    balance = np.round(100.0 - np.bincount(f, weights=d, minlength=preset.n_formulas), 4)
    water = members[_KIND_INDEX["water"]][0]
    hydrosols = members[_KIND_INDEX["hydrosol"]]
    use_water = rng.random(preset.n_formulas) < preset.p_water
    hyd_rows, hyd_pos = _pick(rng, popularity[hydrosols], (~use_water).astype(np.int64))
    solvent = np.full(preset.n_formulas, water)
    solvent[hyd_rows] = hydrosols[hyd_pos]
    f = np.concatenate([np.arange(preset.n_formulas), f])
    m = np.concatenate([solvent, m])
    d = np.concatenate([balance, d])
    order = np.lexsort((-d, f))  # per formula, ingredients by decreasing content (like an INCI list)
    return f[order], m[order], d[order], template


def _titrate(rng: np.random.Generator, f: np.ndarray, m: np.ndarray, d: np.ndarray, truth: pd.DataFrame,
             members: dict, n_formulas: int) -> None:
    """Dose bases like a formulator titrating to pH: in proportion to the formula's acid (in place).

    The neutralisation ratio base/acid scatters around 0.9 (a few gels end under- or over-neutralised).
    """
    acid = truth["acid"].to_numpy()
    base_power = truth["neutralizer"].to_numpy()
    is_base = np.isin(m, members[_KIND_INDEX["base"]])
    acid_f = np.bincount(f[~is_base], weights=d[~is_base] * acid[m[~is_base]], minlength=n_formulas)
    ratio = np.exp(np.log(0.9) + 0.35 * rng.standard_normal(int(is_base.sum())))
    idx = np.flatnonzero(is_base)
    need = acid_f[f[idx]]
    titrated = need * ratio / base_power[m[idx]]
    d[idx] = np.where(need > 0, np.clip(titrated, 0.01, 1.5), d[idx])


def _cover_unused(rng: np.random.Generator, m: np.ndarray, truth: pd.DataFrame, members: dict) -> None:
    """Make every non-solvent material appear at least once by taking over an entry of a popular sibling."""
    counts = np.bincount(m, minlength=len(truth))
    kind_of = np.empty(len(truth), int)
    for ki, rows in members.items():
        kind_of[rows] = ki
    unused = np.flatnonzero(counts == 0)
    skip = {_KIND_INDEX["water"], _KIND_INDEX["hydrosol"]}
    entries_by_kind: dict[int, np.ndarray] = {}
    moved = 0
    for mat in unused:
        ki = int(kind_of[mat])
        if ki in skip:
            continue
        if ki not in entries_by_kind:
            entries_by_kind[ki] = np.flatnonzero(np.isin(m, members[ki]))
        entries = entries_by_kind[ki]
        for _ in range(50):
            if len(entries) == 0:
                break
            e = entries[int(rng.integers(len(entries)))]
            if counts[m[e]] > 2:
                counts[m[e]] -= 1
                m[e] = mat
                counts[mat] += 1
                moved += 1
                break
    log.debug("gave %d unused materials an entry", moved)


# --------------------------------------------------------------------------------------------------- the rule
def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def latent_sums(content: sp.spmatrix | np.ndarray, truth: pd.DataFrame) -> np.ndarray:
    """Content-weighted sums of the hidden vectors, shape ``(n_formulas, n_latents + n_idio)``.

    ``content`` holds content *fractions* (rows sum to 1) with columns in the row order of ``truth``.
    """
    cols = list(LATENTS) + sorted((c for c in truth.columns if c.startswith("idio_")), key=lambda c: int(c[5:]))
    z = truth[cols].to_numpy(np.float64)
    if content.shape[1] != len(z):
        raise ValueError(f"content has {content.shape[1]} columns but truth has {len(z)} materials")
    return np.asarray(content @ z)


def log10_viscosity_from_sums(x: np.ndarray) -> np.ndarray:
    """The hidden rule: noise-free log10 viscosity (cP) from content-weighted sums (see the module docstring)."""
    x = np.atleast_2d(np.asarray(x, np.float64))
    thick, carb, acid, base, salt, oil, emul, struct, surf, hum, alc, solids = (x[:, i] for i in range(len(LATENTS)))
    idio = x[:, len(LATENTS):]
    alc = np.clip(alc, 0.0, 1.0)
    # water phase: glycerin-like humectants and alcohol
    log_phase = 1.2 * hum + 1.8 * hum**2 + 0.9 * alc * (1.0 - alc)
    # neutralisation of acidic polymers; excess base adds ionic strength
    q = base / (acid + 1e-4)
    degree = q**3 / (q**3 + 0.3**3)
    ionic = np.maximum(salt, 0.0) + 0.25 * 0.001 * _softplus((base - acid) / 0.001)
    thinning = np.exp(-2.0 * alc)
    load = (carb * (0.05 + 0.95 * degree) / (1.0 + (ionic / 0.006) ** 1.2) + thick / (1.0 + ionic / 0.08)) * thinning
    eta_polymer = (1.0 + load) ** 4.2 - 1.0
    # emulsion: emulsified share of the oil, lamellar gel network, free oil
    ratio = emul / (0.05 * oil + 1e-3)
    emulsified = ratio**2 / (1.0 + ratio**2)
    free_oil = oil * (1.0 - emulsified)
    network = struct * emul / (emul + 0.005)
    eta_network = (1.0 + network) ** 3.5 - 1.0
    # micelles: salt curve with an optimum that grows with the surfactant level
    s_opt = 0.15 * surf + 0.004
    width = 0.4 * s_opt + 0.003
    bump = np.exp(-0.5 * ((ionic - s_opt) / width) ** 2)
    height = 5.5 * surf / (surf + 0.03) * (0.2 + 0.8 * bump) / (1.0 + oil / 0.08) * np.exp(-6.0 * alc)
    eta_micelle = 10.0**height - 1.0
    structure = np.log10(1.0 + eta_polymer + eta_network + eta_micelle)
    structure = structure * (1.0 - 0.5 * free_oil / (free_oil + 0.05))
    # crowding by droplets and particles (Krieger-Dougherty, max packing 0.68)
    phi = np.minimum(1.1 * oil * emulsified + solids, 0.6)
    log_crowd = -1.7 * np.log10(1.0 - phi / 0.68)
    # material-specific effects, strongest in structured systems
    amp = 0.3 * 0.8 ** np.arange(idio.shape[1])
    log_idio = (np.tanh(idio) @ amp) * (0.25 + 0.75 * np.tanh(structure / 2.0))
    total = log_phase + structure + log_crowd + log_idio
    cap, floor = 5.2, -0.1
    total = cap - 0.4 * _softplus((cap - total) / 0.4)
    return floor + 0.1 * _softplus((total - floor) / 0.1)


def true_viscosity(content: sp.spmatrix | np.ndarray, truth: pd.DataFrame) -> np.ndarray:
    """Noise-free viscosity (cP) of formulas given as content fractions, columns in ``truth`` row order."""
    return 10.0 ** log10_viscosity_from_sums(latent_sums(content, truth))


def hidden_viscosity(formulas: pd.DataFrame, truth: pd.DataFrame, noise: float = 0.0,
                     seed: int | None = 0) -> pd.Series:
    """The hidden rule applied to any formulas in the long format (``formula_id, material_id, content``; contents
    in % or fractions, normalised per formula): viscosity in cP, one value per formula (Series indexed by
    ``formula_id``, in order of first appearance).

    ``noise=0`` gives the noise-free truth (what a design should be judged against). ``noise > 0`` measures like the
    lab: the value times ``exp(noise * N(0, 1))`` (the lab's own level is ``PRESETS[name].noise``, 0.04), rounded
    to 4 significant figures like an instrument read-out, with the noise drawn from ``seed``. This does not touch
    the lab's generation (its formulas and measurements are unchanged).

    Raises:
        ValueError: a material id absent from ``truth``, or a formula without positive content.
    """
    ids = pd.Index(truth["material_id"].astype(str))
    mids = formulas["material_id"].astype(str)
    cols = ids.get_indexer(mids)
    if (cols < 0).any():
        unknown = sorted(set(mids[cols < 0]))
        raise ValueError(f"hidden_viscosity: material(s) {unknown[:10]} are not in the lab's catalogue")
    fids = pd.Index(pd.unique(formulas["formula_id"].astype(str)))
    rows = fids.get_indexer(formulas["formula_id"].astype(str))
    content = sp.csr_matrix((formulas["content"].to_numpy(np.float64), (rows, cols)), shape=(len(fids), len(ids)))
    sums = np.asarray(content.sum(axis=1)).ravel()
    if (sums <= 0).any():
        raise ValueError(f"hidden_viscosity: formula {fids[np.argmax(sums <= 0)]!r} has no positive content")
    visc = true_viscosity(sp.diags(1.0 / sums) @ content, truth)
    if noise > 0:
        visc = visc * np.exp(noise * np.random.default_rng(seed).standard_normal(len(visc)))
        digits = 3 - np.floor(np.log10(visc)).astype(int)
        visc = np.array([round(v, int(k)) for v, k in zip(visc, digits)])
    return pd.Series(visc, index=fids, name="viscosity")


# ------------------------------------------------------------------------------------------- supplier sheets
#: Multiplicative log-normal noise of a supplier-sheet value around the hidden property (SD of the natural log).
SHEET_NOISE = 0.3
#: Chance that a sheet leaves a value out (NaN).
SHEET_MISSING = 0.15
#: Chance that a material has no sheet at all (a whole NaN row).
SHEET_ABSENT = 0.05


def supplier_sheet_table(truth: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Noisy supplier-sheet values of the chemical hidden properties: ``material_id`` and one ``sheet_<latent>``
    column per :data:`LATENTS` entry (never the ``idio_*`` effects, which no sheet knows).

    Each value is the hidden one times ``exp(SHEET_NOISE * N(0, 1))`` (a zero stays zero: a sheet says a gum has
    no carbomer power), :data:`SHEET_MISSING` of the values are left out and :data:`SHEET_ABSENT` of the materials
    have no sheet. The noise comes from its own generator (``seed`` and a fixed salt), so the lab itself does not
    change; the exact hidden values are never shown.
    """
    rng = np.random.default_rng([seed, 0x5EE7])
    z = truth[list(LATENTS)].to_numpy(np.float64)
    sheet = z * np.exp(SHEET_NOISE * rng.standard_normal(z.shape))
    sheet = np.round(sheet, 4)
    sheet[rng.random(z.shape) < SHEET_MISSING] = np.nan
    sheet[rng.random(len(z)) < SHEET_ABSENT] = np.nan
    out = pd.DataFrame(sheet, columns=[f"sheet_{c}" for c in LATENTS])
    out.insert(0, "material_id", truth["material_id"].to_numpy())
    return out


# -------------------------------------------------------------------------------------------------------- API
def _generate(preset: LabPreset, seed: int) -> dict[str, pd.DataFrame]:
    """Raw tables: formulas (content in %), properties, materials, truth, plus the template of each formula."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    truth, popularity, dose_factor, members = _catalogue(preset, rng)
    f, m, d, template = _formulas(preset, rng, truth, popularity, dose_factor, members)
    content = sp.csr_matrix((d / 100.0, (f, m)), shape=(preset.n_formulas, len(truth)))
    visc = true_viscosity(content, truth) * np.exp(preset.noise * rng.standard_normal(preset.n_formulas))
    digits = 3 - np.floor(np.log10(visc)).astype(int)  # 4 significant figures, like an instrument read-out
    visc = np.array([round(v, int(k)) for v, k in zip(visc, digits)])
    fids = np.array([f"F{i + 1:06d}" for i in range(preset.n_formulas)], dtype=object)
    mids = truth["material_id"].to_numpy()
    tables = {
        "formulas": pd.DataFrame({"formula_id": fids[f], "material_id": mids[m], "content": d}),
        "properties": pd.DataFrame({"formula_id": fids, "viscosity": visc}),
        "materials": truth[["material_id", "name", "family"]].copy(),
        "truth": truth.drop(columns=["name"]),
        "templates": pd.DataFrame({"formula_id": fids, "template": np.array(list(_TEMPLATES))[template]}),
    }
    log.info("lab %s (seed %d): %d materials, %d formulas, %d rows in %.2f s", preset.name, seed, len(truth),
             preset.n_formulas, len(f), time.perf_counter() - t0)
    return tables


def make_lab(preset: str | LabPreset = "small", seed: int = 0,
             supplier_sheet: bool = False) -> tuple[FormulaData, pd.DataFrame]:
    """Generate a synthetic lab.

    With ``supplier_sheet=True`` the materials table also carries the noisy ``sheet_*`` columns of
    :func:`supplier_sheet_table` (for ``features="supplier"``); formulas, properties and truth are the same either
    way.

    Returns:
        ``(data, truth)``: ``data`` is the :func:`mrl.data.load_formulas` result (target ``viscosity`` in cP,
        name ``lab_<preset>``; materials have ``material_id, name, family``); ``truth`` has ``material_id``,
        ``family``, ``kind`` and one column per hidden property (:data:`LATENTS` and ``idio_*``), in the same
        row order as ``data.materials``. The truth is never meant to be given to a model.
    """
    tables = lab_tables(preset, seed, supplier_sheet)
    data = load_formulas(tables["formulas"], tables["properties"], tables["materials"], targets=("viscosity",),
                         content_unit="percent", name=f"lab_{_resolve(preset).name}")
    return data, tables["truth"]


def lab_tables(preset: str | LabPreset = "small", seed: int = 0, supplier_sheet: bool = False
               ) -> dict[str, pd.DataFrame]:
    """The lab's tables as a lab keeps them: ``formulas`` (content in %), ``properties``, ``materials`` (with the
    ``sheet_*`` columns when ``supplier_sheet``) and ``truth``."""
    tables = _generate(_resolve(preset), seed)
    if supplier_sheet:
        tables["materials"] = tables["materials"].merge(supplier_sheet_table(tables["truth"], seed),
                                                        on="material_id", how="left")
    return tables


def write_lab(directory: str | Path, preset: str | LabPreset = "small", seed: int = 0,
              supplier_sheet: bool = False) -> dict[str, Path]:
    """Write ``formulas.csv`` (content in %), ``properties.csv``, ``materials.csv`` and ``truth.csv`` atomically;
    with ``supplier_sheet=True`` ``materials.csv`` has the ``sheet_*`` columns too (see :func:`make_lab`)."""
    tables = lab_tables(preset, seed, supplier_sheet)
    directory = Path(directory)
    return {key: write_table(tables[key], directory / f"{key}.csv")
            for key in ("formulas", "properties", "materials", "truth")}
