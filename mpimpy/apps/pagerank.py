"""PageRank by power iteration, the transition-matrix product on a crossbar.

With ``P`` the row-stochastic transition matrix of a graph (:func:`transition_matrix`: row
``i`` holds node ``i``'s out-edge weights divided by their sum; rows of dangling nodes, which
have no out-edges, are zero), the rank row vector ``x`` is iterated as networkx does::

    x <- alpha * (x @ P + sum(x[dangling]) / N) + (1 - alpha) / N

from ``x = 1/N`` until the L1 change is below ``N * tol``. Only ``x @ P`` goes to the crossbar
(``P`` programmed once); the teleport and dangling terms are digital. ``normalize`` rescales
``x`` to sum 1 after each step (a digital division that cancels any gain error of the analog
product, e.g. from IR drop); with the exact product it changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mpimpy.metrics import kendall_tau, top_k_overlap

from .matmul import resolve


def transition_matrix(graph, weight: str | None = "weight", nodelist=None):
    """``(P, nodes)``: the row-stochastic transition matrix of ``graph`` (a networkx graph;
    undirected edges go both ways, parallel edges add up, edges without ``weight`` weigh 1)
    and the node order of its rows."""
    import networkx as nx

    nodes = list(graph) if nodelist is None else list(nodelist)
    if not nodes:
        raise ValueError("the graph has no nodes")
    a = nx.to_numpy_array(graph, nodelist=nodes, weight=weight, dtype=np.float64)
    if (a < 0).any():
        raise ValueError("edge weights must be non-negative")
    out = a.sum(axis=1, keepdims=True)
    p = np.divide(a, out, out=np.zeros_like(a), where=out > 0)
    return p, nodes


@dataclass
class PageRankResult:
    """Ranks (sum 1, in the order of the transition matrix's rows) and how they were reached."""

    ranks: np.ndarray
    iterations: int  # products computed
    converged: bool
    deltas: list[float] = field(default_factory=list)  # L1 change of each iteration

    def as_dict(self, nodes) -> dict:
        return dict(zip(nodes, self.ranks.tolist(), strict=True))


def pagerank(p, matmul=None, alpha: float = 0.85, tol: float = 1e-6, max_iter: int = 100,
             normalize: bool = True) -> PageRankResult:
    """Power iteration on the transition matrix ``p`` (N x N, rows summing to 1 or 0).

    Args:
        p: from :func:`transition_matrix`.
        matmul: computes ``x @ p``; default the exact product.
        alpha: damping factor (probability of following a link).
        tol: converged when the L1 change of an iteration is below ``N * tol`` (networkx's
            rule). A noisy product may never get there: it then stops after ``max_iter``.
        max_iter: most iterations.
        normalize: rescale the ranks to sum 1 after each iteration.
    """
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != p.shape[1]:
        raise ValueError(f"p must be a square matrix, got shape {p.shape}")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    n = p.shape[0]
    mm = resolve(matmul, p)
    dangling = p.sum(axis=1) == 0
    x = np.full(n, 1.0 / n)
    deltas: list[float] = []
    converged = False
    iterations = 0
    for _ in range(max_iter):
        last = x
        x = alpha * (np.asarray(mm(last[None, :]), dtype=np.float64)[0]
                     + last[dangling].sum() / n) + (1 - alpha) / n
        iterations += 1
        if normalize:
            x = x / x.sum()
        deltas.append(float(np.abs(x - last).sum()))
        if deltas[-1] < n * tol:
            converged = True
            break
    return PageRankResult(x, iterations, converged, deltas)


def rank_agreement(ranks, reference, k: int = 10) -> dict[str, float]:
    """How well ``ranks`` order the nodes as ``reference`` does: Kendall's tau-b over all
    nodes, the overlap of the top ``k`` (fraction), the relative L1 error and whether the top
    node is the same."""
    ranks, reference = np.asarray(ranks, float), np.asarray(reference, float)
    k = min(k, ranks.size)
    return {
        "kendall_tau": kendall_tau(reference, ranks),
        f"top{k}_overlap": top_k_overlap(reference, ranks, k),
        "rank_l1_error": float(np.abs(ranks - reference).sum() / np.abs(reference).sum()),
        "same_top_node": float(np.argmax(ranks) == np.argmax(reference)),
    }


def load_graph(name: str, seed: int = 0, n: int = 200):
    """A graph by name: ``"les_miserables"`` (77 characters, co-appearance weights),
    ``"karate"`` (Zachary's karate club, 34 members), both shipped with networkx; or
    ``"random"``: :func:`random_graph` ``(n, seed)``."""
    import networkx as nx

    if name == "les_miserables":
        return nx.les_miserables_graph()
    if name == "karate":
        return nx.karate_club_graph()
    if name == "random":
        return random_graph(n, seed)
    raise ValueError(f"graph must be 'les_miserables', 'karate' or 'random', got {name!r}")


def random_graph(n: int = 200, seed: int = 0):
    """A directed scale-free graph (networkx's ``scale_free_graph``, Bollobas et al.) of
    ``n`` nodes: heavy-tailed in-degrees like the web, parallel edges merged into weights,
    self-loops removed."""
    import networkx as nx

    multi = nx.scale_free_graph(n, seed=seed)
    graph = nx.DiGraph()
    graph.add_nodes_from(multi)
    for u, v in multi.edges():
        if u != v:
            w = graph[u][v]["weight"] + 1 if graph.has_edge(u, v) else 1
            graph.add_edge(u, v, weight=w)
    return graph


__all__ = [
    "PageRankResult",
    "load_graph",
    "pagerank",
    "random_graph",
    "rank_agreement",
    "transition_matrix",
]
