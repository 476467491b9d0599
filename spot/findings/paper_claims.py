"""The SPoT paper's findings (ICCVW 2025; its Findings 1, 2 and 4 quoted, and its claims on SPoT-ON and MAE): each a
paired comparison per backbone (or model pair) on the images both numbers were measured on; its Finding 3 (oracle
placements and saliency, Table 3) an interval over images of the mean relative saliency gain."""
from __future__ import annotations

import math

from ..stats import PairedDifference
from .defaults import MARGIN, SALIENCY_PREDOMINANT
from .measure import config_value, decide, fmt, greater, judge, label, main_setting_label, paired, rows
from .registry import NotMeasured, finding

SUBPIXEL = "Subpixel beats grid placement"
CENTRE_BIAS = "Centre bias helps at sparse budgets, coverage at larger ones"
ORACLE = "The oracle finds much better placements"
TRANSFER = "Oracle positions transfer between models"
SALIENCY = "Saliency is not what drives the oracle's placements"
MAE = "MAE is the most robust to sparsity"


@finding(SUBPIXEL, source="paper", reads=("oracle",),
         quote="Finding 1 (§4.1, Table 1): \"Off-grid token placement enables greater flexibility and yields "
               "substantially better performance than grid-based approaches under sparse token settings.\" Tested as "
               "Table 1 does: SPoT-ON's final positions kept subpixel vs snapped to the patch grid.")
def subpixel_beats_grid(inputs, config, *, margin=MARGIN):
    """SPoT-ON (Table 1, the main oracle setting, the sparse budget) subpixel − snapped, per backbone."""
    setting, budget = main_setting_label(config), config_value(config, "oracle.sparse_budget")
    o = rows(inputs, "oracle").where(experiment="table1", placement="spot_on", setting=setting, budget=budget,
                                     metric="acc1")
    statistic = f"Acc@1 subpixel − snapped (points): SPoT-ON {setting} at {budget} tokens"
    for backbone in o.distinct("backbone"):
        f = o.where(backbone=backbone)

        def compute(f=f):
            d = paired(f.scores(positions="placed"), f.scores(positions="snapped"))
            return d, greater(d, margin), ""

        yield judge(SUBPIXEL, label(config, backbone), statistic, compute)


def _spot_rows(inputs):
    """Evaluation rows of the SPoT models' own tokenizer at the placements' positions (Acc@1)."""
    return rows(inputs, "evaluation").where(variant="spot", method="spot", positions="placed", metric="acc1")


@finding(CENTRE_BIAS, source="paper", reads=("evaluation",),
         quote="Finding 2 (§4.2, Tables 2, 5): \"Object-centric priors yield higher performance in sparse regimes. "
               "In dense regimes, even and structured coverage provides better performance.\" Tested as Center vs "
               "Isotropic at the smallest and the largest budget.")
def centre_bias(inputs, config, *, margin=MARGIN):
    """Center − Isotropic at the smallest budget and Isotropic − Center at the largest, per backbone."""
    budgets = [int(b) for b in config_value(config, "evaluation.budgets")]
    e = _spot_rows(inputs)
    for backbone in e.distinct("backbone"):
        for budget, (a, b) in ((min(budgets), ("center", "isotropic")), (max(budgets), ("isotropic", "center"))):
            f = e.where(backbone=backbone, budget=budget)

            def compute(f=f, a=a, b=b):
                d = paired(f.scores(placement=a), f.scores(placement=b))
                return d, greater(d, margin), "Center: per-image mean over its seeds"

            yield judge(CENTRE_BIAS, f"{label(config, backbone)}, {budget} tokens",
                        f"SPoT Acc@1 {a.capitalize()} − {b.capitalize()} (points) at {budget} tokens", compute)


@finding(ORACLE, source="paper", reads=("oracle",),
         quote="§7 (Tables 2, 5): \"SPoT-ON provided an estimate of best-case performance from optimal token "
               "placement. Although placements are guided via an oracle, these optimal features exist independently "
               "of how they were discovered, revealing a performance gap that better informed priors could help "
               "bridge.\" The verdict is on the label-free search (positions minimising the prediction's entropy, "
               "no label): the control that separates better placement from a label written into the positions.")
def oracle_placements(inputs, config, *, margin=MARGIN):
    """Label-free search − Isotropic start at the sparse budget (the verdict), with SPoT-ON (true label) − Isotropic
    reported in the note, per backbone (the oracle's ``controls`` rows)."""
    setting, budget = main_setting_label(config), config_value(config, "oracle.sparse_budget")
    o = rows(inputs, "oracle").where(experiment="controls", budget=budget, metric="acc1")
    statistic = f"Acc@1 label-free search − Isotropic start (points), {setting} at {budget} tokens"
    for backbone in o.distinct("backbone"):
        f = o.where(backbone=backbone)

        def compute(f=f):
            start = f.scores(placement="isotropic")
            d = paired(f.where(setting=setting).scores(placement="spot_on_label_free"), start)
            return d, greater(d, margin), "verdict on the label-free gain; " + _with_label(f, start, setting)

        yield judge(ORACLE, label(config, backbone), statistic, compute)


def _with_label(f, start, setting) -> str:
    """The SPoT-ON (true label) gain over the same start, reported beside the verdict."""
    try:
        gain = paired(f.where(setting=setting).scores(placement="spot_on"), start)
        return f"SPoT-ON (true label) − Isotropic: {fmt(gain)}"
    except NotMeasured as missing:
        return f"SPoT-ON − Isotropic not measured ({missing})"


@finding(SALIENCY, source="paper", reads=("oracle",),
         quote="Finding 3 (§4.3, Table 3): \"While oracle gradient search yields a slight bias toward higher-saliency "
               "pixels, the results are not highly significant. The results suggest that token interdependency — as "
               "opposed to pure object saliency — is a predominant factor for optimal placements.\" Tested as the "
               "mean relative saliency gain (Eq. 5) of SPoT-ON over its Isotropic start lying below "
               "SALIENCY_PREDOMINANT %, per backbone and budget.")
def saliency_not_predominant(inputs, config, *, threshold=SALIENCY_PREDOMINANT):
    """Table 3's mean RSG (%) per backbone and budget with its 95 % interval over images (the oracle's rows):
    holds below ``threshold``, contradicted above it; the note says whether the gain is above 0 (the "slight
    bias")."""
    o = rows(inputs, "oracle").where(experiment="table3", metric="rsg")
    statistic = f"mean relative saliency gain of SPoT-ON over Isotropic (Eq. 5, %), below {threshold:g} %"
    for backbone in o.distinct("backbone"):
        for budget in o.where(backbone=backbone).distinct("budget"):
            r = o.where(backbone=backbone, budget=budget).frame

            def compute(r=r):
                if len(r) != 1:
                    raise NotMeasured(f"{len(r)} Table 3 rows where one was expected")
                low, high = float(r["ci_low"].iloc[0]), float(r["ci_high"].iloc[0])
                if math.isnan(low):
                    raise NotMeasured("the Table 3 row carries no interval (results from before the oracle wrote "
                                      "one: re-run it)")
                d = PairedDifference(float(r["value"].iloc[0]), low, high, int(r["n_images"].iloc[0]), math.nan)
                bias = "above 0 (a bias toward saliency)" if low > 0 else \
                    "below 0 (away from saliency)" if high < 0 else "not distinguishable from 0"
                return d, decide(d, threshold, -1), f"the gain is {bias}"

            yield judge(SALIENCY, f"{label(config, backbone)}, {int(budget)} tokens", statistic, compute)


@finding(TRANSFER, source="paper", reads=("transfer",),
         quote="Finding 4 (§4.4, Table 4): \"Discovered positions via SPoT-ON generalize between models; a set of "
               "placements optimized via one model will improve results with another independently trained model in "
               "sparse regimes.\"")
def transfer(inputs, config, *, margin=MARGIN):
    """Transfer − original Acc@1 of the target at Table 4's budget, per source → target."""
    budget = config_value(config, "transfer.budget")
    t = rows(inputs, "transfer").where(experiment="table4", placement="spot_on", budget=budget)
    statistic = f"target Acc@1 at the source's SPoT-ON positions − at the Isotropic start (points), {budget} tokens"
    for source in t.distinct("source"):
        for target in t.where(source=source).distinct("target"):
            if target == source:
                continue
            f = t.where(source=source, target=target)

            def compute(f=f):
                d = paired(f.scores(metric="transfer_acc1"), f.scores(metric="original_acc1"))
                return d, greater(d, margin), ""

            yield judge(TRANSFER, f"{label(config, source)} → {label(config, target)}", statistic, compute)


def mae_backbone(config) -> str:
    """The backbone whose classifier was fine-tuned from an MAE pre-training: the one entry of ``backbones`` with a
    ``pretrained:`` source (a ``pretrained:`` key is what an MAE recipe needs, see config.yaml)."""
    found = [name for name, entry in (config.get("backbones") or {}).items() if (entry or {}).get("pretrained")]
    if len(found) != 1:
        raise NotMeasured(f"no single MAE backbone (a backbone with `pretrained:`) in the config: {found or 'none'}")
    return found[0]


@finding(MAE, source="paper", reads=("evaluation",),
         quote="§5 (Table 5): \"the self-supervised MAE model consistently outperforms its supervised "
               "counterparts under sparse configurations.\" Tested as SPoT Isotropic at the smallest budget, the MAE "
               "backbone vs every other.")
def mae_most_robust(inputs, config, *, margin=MARGIN):
    """SPoT Isotropic Acc@1 at the smallest budget: the MAE backbone − each other backbone (the same images)."""
    mae, budget = mae_backbone(config), min(int(b) for b in config_value(config, "evaluation.budgets"))
    e = _spot_rows(inputs).where(placement="isotropic", budget=budget)
    statistic = f"SPoT Isotropic Acc@1 at {budget} tokens, MAE − other backbone (points)"
    for other in e.distinct("backbone"):
        if other == mae:
            continue

        def compute(other=other):
            d = paired(e.where(backbone=mae).scores(), e.where(backbone=other).scores())
            return d, greater(d, margin), ""

        yield judge(MAE, f"{label(config, mae)} − {label(config, other)}", statistic, compute)
