"""``compression_cost``: per compression method, time per fine-tuning epoch / one plain training epoch, and the
time of post-training methods (PTQ) in plain epochs.

Setting: Fashion-MNIST, the reference CNN in torch and in tf_keras, trained 2 epochs on 2,000 members (quick: the
MLP on 500); ``toolkit.compress.compress(model, config, CompressData(members, non-members, recipe))`` per method
of a representative set across the four backends (below). The fine-tuning epoch is the method's own
``seconds_per_epoch`` (``fine_tune_seconds / fine_tune_epochs`` measured inside the backend, e.g. tfmot's
``fit`` with its pruning callbacks); a PTQ method's time is ``CompressedModel.seconds`` (the whole ``apply``:
conversion, calibration, checks). The plain epoch is ``train_model`` of a fresh model of the same framework
with the same recipe for as many epochs as the methods fine-tune (2), divided by 2, best of 3: per-call
overheads (tf.function tracing, optimizer creation) are in both. No goal was set: reported.
"""

from __future__ import annotations

from benchmarks._common import best_of, fashion_split, figure, pin_torch_threads, quiet_warnings, threads

EPOCHS = 2
#: name -> config (fine-tuning methods train EPOCHS epochs; PTQ methods have no fine_tune_epochs).
METHODS = {
    "tfmot_prune": {"sparsity": 0.5, "fine_tune_epochs": EPOCHS},
    "tfmot_cluster": {"n_clusters": 16, "fine_tune_epochs": EPOCHS},
    "tfmot_qat": {"fine_tune_epochs": EPOCHS},
    "tflite_dynamic": {},
    "tflite_int8": {"calibration_samples": 100},
    "torch_global_unstructured": {"sparsity": 0.5, "fine_tune_epochs": EPOCHS},
    "torch_cluster": {"n_clusters": 16, "fine_tune_epochs": EPOCHS},
    "torch_dynamic_int8": {},
    "torch_static_int8": {"calibration_samples": 200},
    "nni_l1norm": {"sparsity": 0.5, "fine_tune_epochs": EPOCHS},
    "nni_taylor": {"sparsity": 0.5, "fine_tune_epochs": EPOCHS, "importance_epochs": 1},
    "nni_qat": {"fine_tune_epochs": EPOCHS},
    "nni_ptq": {"calibration_samples": 200},
}


def run(quick: bool = False, log=print) -> dict:
    quiet_warnings()
    from toolkit.compress import METHODS as REGISTRY
    from toolkit.compress import CompressData, compress
    from toolkit.models import ModelSpec, TrainRecipe, build_model, train_model, train_reference_model

    members, arch, repeats, limit = (500, "mlp", 1, 2000) if quick else (2000, "cnn", 3, None)
    pin_torch_threads()
    ds, parts = fashion_split(members, members, 0, seed=0, limit=limit)
    mem, non = parts["members"], parts["nonmembers"]
    spec = ModelSpec(arch=arch, input_shape=ds.input_shape, n_classes=ds.n_classes)
    recipe = TrainRecipe(epochs=EPOCHS, batch_size=64, seed=0)
    data = CompressData(mem.x, mem.y, non.x, non.y, recipe)
    base, plain = {}, {}
    for fw in ("torch", "keras"):
        base[fw] = train_reference_model(spec, fw, mem.x, mem.y, recipe)
        # The first fit of a process pays framework start-up (kernels, tracing): warm up outside the timer.
        train_model(build_model(spec, fw, seed=1), mem.x[:128], mem.y[:128], recipe.model_copy(update={"epochs": 1}))
        best, _ = best_of(lambda fw=fw: train_model(build_model(spec, fw, seed=1), mem.x, mem.y, recipe), repeats)
        plain[fw] = best / EPOCHS
        log(f"compression_cost: plain {fw} epoch {plain[fw]:.3f}s")
    rows, figures = [], []
    for name, cfg in METHODS.items():
        fw = REGISTRY.meta(name)["framework"]
        cm = compress(base[fw], {"method": name, **cfg}, data)
        row = {"method": name, "backend": cm.backend, "framework": fw, "fine_tune_epochs": cm.fine_tune_epochs,
               "seconds": round(cm.seconds, 3), "seconds_per_epoch": cm.seconds_per_epoch,
               "plain_epoch_s": round(plain[fw], 3), "accuracy": cm.accuracy, "base_accuracy": cm.base_accuracy}
        if cm.fine_tune_epochs:
            row["epoch_ratio"] = round(cm.seconds_per_epoch / plain[fw], 3)
            row["total_in_plain_epochs"] = round(cm.seconds / plain[fw], 3)
            figures.append(figure(f"{name} fine-tune epoch / plain epoch", row["epoch_ratio"], None,
                                  note=f"{cm.backend}; whole compress = {row['total_in_plain_epochs']:g} plain epochs"))
        else:
            row["ptq_in_plain_epochs"] = round(cm.seconds / plain[fw], 3)
            figures.append(figure(f"{name} PTQ time / plain epoch", row["ptq_in_plain_epochs"], None,
                                  note=f"{cm.backend}; {cm.seconds:.2f}s"))
        rows.append(row)
        log(f"compression_cost {name}: {row}")
    return {"figures": figures,
            "details": {"setting": {"data": "fashion_mnist", "arch": arch, "members": members,
                                    "recipe": recipe.model_dump(mode="json"), "fine_tune_epochs": EPOCHS,
                                    "plain_repeats": repeats, "threads": threads()},
                        "plain_epoch_s": {k: round(v, 4) for k, v in plain.items()}, "rows": rows}}
