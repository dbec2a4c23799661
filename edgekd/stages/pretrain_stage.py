"""Pretrain stages: self-supervised pretext + contrastive pretraining of the student network
(``pretrain``) and of the teacher network (``pretrain_teacher``), on the labelled training videos
(labels unused), the unlabelled transfer set, or both (``pretrain.data``).

Each writes ``<stage>/ckpt.pt`` (an edgekd checkpoint of the network; its classifier head was never
trained) and ``<stage>/metrics.jsonl``. When a network is pretrained its training stages depend on
this one (the stage table's ``upstream_when``) and start from its weights with a fresh head
(``edgekd.stages.train_stage.init_from_pretrain``). A network not pretrained gets a record that
says so and nothing else, so the stage list is the same for every recipe.
"""

from __future__ import annotations

import time
from typing import Any

from edgekd.data.clips import make_loader
from edgekd.stages.data_stage import DataContext
from edgekd.stages.rundir import RunDir

CKPT = "ckpt.pt"


def run_pretrain(rd: RunDir) -> dict[str, Any]:
    """Stage entry: self-supervised pretraining of the student network (``pretrain.networks``)."""
    return _pretrain(rd, "student", "pretrain")


def run_pretrain_teacher(rd: RunDir) -> dict[str, Any]:
    """Stage entry: self-supervised pretraining of the teacher network (``pretrain.networks``)."""
    return _pretrain(rd, "teacher", "pretrain_teacher")


def _pretrain(rd: RunDir, network: str, stage: str) -> dict[str, Any]:
    from torch.utils.data import ConcatDataset

    from edgekd.ssl.pretrain import (
        PretextPairDataset,
        PretrainNet,
        PretrainOptions,
        run_pretraining,
    )
    from edgekd.stages.train_stage import build_for, training_precision
    from edgekd.train.checkpoint import save_checkpoint
    from edgekd.utils.rng import seed_everything

    p = rd.recipe.pretrain
    if not (p.enabled and network in p.networks):
        print(f"pretraining of the {network} is off (pretrain.enabled, pretrain.networks): nothing to do", flush=True)
        return {"enabled": False}
    cfg = getattr(rd.recipe, network)
    ctx = DataContext.load(rd)
    seed = rd.recipe.seed if cfg.seed is None else cfg.seed
    seed_everything(seed)
    model, kwargs = build_for(cfg, len(ctx.split.classes), ctx)
    net = PretrainNet(model, num_pretext=len(p.transforms), input_shape=ctx.input_shape,
                      projection_dim=p.projection_dim, hidden_dim=p.hidden_dim)
    # one pretraining step runs the network on 3 clips per video (two views and the pretext clip)
    choice = training_precision(rd, cfg, kwargs, ctx, batch=3 * p.batch_size)
    print(f"[{stage}] {choice.line()}", flush=True)
    # the clips it learns from: labelled training videos (labels unused), the transfer set, or both
    aug = {"aug_variants": cfg.aug_variants, "aug_schedule": cfg.aug_schedule}
    parts = ([ctx.dataset("train", train=True, **aug)] if p.data in ("labeled", "both") else []) + \
            ([ctx.unlabeled_dataset(**aug)] if p.data in ("unlabeled", "both") else [])
    pairs = PretextPairDataset(parts[0] if len(parts) == 1 else ConcatDataset(parts), p.transforms)
    # drop_last: a last batch of one video would have no negatives
    loader = make_loader(pairs, batch_size=p.batch_size, shuffle=True, workers=rd.recipe.data.workers,
                         seed=seed, drop_last=len(pairs) > p.batch_size)
    opts = PretrainOptions(epochs=p.epochs, lr=p.lr, optimizer=p.optimizer, weight_decay=p.weight_decay,
                           contrastive_weight=p.contrastive_weight, temperature=p.temperature, negatives=p.negatives,
                           precision=choice.precision, channels_last=cfg.channels_last,
                           max_steps_per_epoch=p.max_steps_per_epoch, desc=stage)
    out = rd.stage_dir(stage)
    start = time.perf_counter()
    history = run_pretraining(net, loader, opts, metrics_path=out / "metrics.jsonl")
    last = history[-1]
    save_checkpoint(out / CKPT, model, model_name=cfg.model, model_kwargs=kwargs, classes=ctx.split.classes,
                    input_spec=ctx.input_spec(), metrics={**last, "pretext_classes": list(p.transforms)})
    return {"enabled": True, "network": network, "data": p.data, "clips": len(pairs), "epochs": p.epochs,
            "first_loss": history[0]["loss"], "final_loss": last["loss"],
            "final_pretext_top1": last["pretext_top1"], "feature_dim": net.feature_dim,
            "precision": last["precision"], "precision_choice": choice.to_dict(),
            "seconds": round(time.perf_counter() - start, 2)}
