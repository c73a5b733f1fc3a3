"""Task ``ntk_prompt``, the figure: accuracies, kernel-tracking gaps (margin) and per-example margins."""

import numpy as np

from dynamics.plots import identity_line
from dynamics.tasks.ntk_prompt_kernels import margin

VARIANTS = ("prompt", "head", "control")


def plot_prompt(results: dict, figures, title: str) -> None:
    """``ntk_prompt.png``: accuracies, kernel-tracking gaps (margin) and per-example margins."""
    import matplotlib.pyplot as plt

    figures.mkdir(parents=True, exist_ok=True)
    shots = sorted(results, key=lambda s: int(s[1:]))
    variants = [v for v in VARIANTS if v in results[shots[0]]]
    fig = plt.figure(figsize=(15, 8.5))
    grid = fig.add_gridspec(2, 2 * len(variants))
    half = len(variants)
    top = [fig.add_subplot(grid[0, :half]), fig.add_subplot(grid[0, half:])]
    bottom = [fig.add_subplot(grid[1, 2 * i:2 * i + 2]) for i in range(len(variants))]
    panels = (
        (top[0], [("sgd", "GD"), ("adam", "Adam")],
         {"fine-tuning acc": "ft_test_acc", "kernel acc": "kernel_test_acc", "agreement": "agreement"},
         "test accuracy / agreement", (0.4, 1.02)),
        (top[1], [("sgd", "GD")],
         {"‖m_FT − m_kernel‖/‖m_FT − m₀‖": "margin_function_gap",
          "‖m_FT − m_lin‖/‖m_FT − m₀‖": "margin_linearization_gap",
          "‖K_m(θ_T) − K_m(θ₀)‖/‖K_m(θ₀)‖": "margin_kernel_change"},
         "relative gap (margin m = f_great − f_terrible)", None),
    )
    for ax, opts, metrics, ylabel, ylim in panels:
        labels, values = [], {name: [] for name in metrics}
        for k in shots:
            for v in variants:
                for opt, what in opts:
                    if opt not in results[k][v]:
                        continue
                    labels.append(f"{v} {k}\n{what}")
                    for name, key in metrics.items():
                        values[name].append(results[k][v][opt][key])
        pos = np.arange(len(labels))
        width = 0.8 / len(metrics)
        for i, (name, vals) in enumerate(values.items()):
            ax.bar(pos + (i - (len(metrics) - 1) / 2) * width, vals, width, label=name)
        ax.set_xticks(pos, labels, fontsize=7)
        ax.set(ylabel=ylabel)
        if ylim is None:
            ax.set_yscale("log")
        else:
            ax.set_ylim(*ylim)
            ax.axhline(0.5, color="k", lw=0.6, ls=":")
        ax.legend(fontsize=7, loc="upper left")
    with_adam = any("adam" in results[k][v] for k in shots for v in variants)
    top[0].set_title(f"{title}\nkernel: GD ↔ eNTK kernel GD" + (", Adam ↔ A-SignGD regression" if with_adam else ""),
                     fontsize=10)
    top[1].set_title("GD vs eNTK kernel GD: how far the kernel is from fine-tuning", fontsize=10)
    k = shots[-1]
    for ax, v in zip(bottom, variants):
        r = results[k][v]["sgd"]
        m0 = margin(results[k][v]["_f0_te"])
        ax.scatter(margin(r["_f_kernel"]) - m0, margin(r["_f_te"]) - m0, s=5, alpha=0.5)
        identity_line(ax)
        ax.set(xlabel="kernel GD: m − m₀ (test)", ylabel="GD fine-tuning: m − m₀ (test)",
               title=f"{v}, {k} ({r['steps']} steps, moved {r['margin_moved']:.2f}):\n"
                     f"margin gap {r['margin_function_gap']:.2f}, acc FT {r['ft_test_acc']:.3f} / "
                     f"kernel {r['kernel_test_acc']:.3f}")
        ax.title.set_fontsize(9)
    fig.tight_layout()
    fig.savefig(figures / "ntk_prompt.png", dpi=110)
    plt.close(fig)

