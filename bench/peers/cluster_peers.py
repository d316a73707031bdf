"""The peer side of the clustering comparison, and the judge of every side's centroids.

    python cluster_peers.py faiss|kmeans|minibatch NOISY.f32 D K SEED CENTROIDS.json
    python cluster_peers.py evaluate CLEAN.f32 NOISY.f32 D K CENTROIDS.json...

A method reads the noisy reports (rows of D little-endian f32), clusters them into K groups and
writes its centroids; it prints {"seconds"} (loading excluded). Both peers use every core.
`evaluate` clusters the clean points (the projections before noise, one row per distinct
embedding; noisy row i comes from clean row i mod N) with k-means (10 starts) as the reference
and, for each centroid file, prints: the k-means objective on the noisy points (mean squared
distance to the nearest centroid, what k-means minimises), the same on the clean points (how well
the centroids describe the structure under the noise; the reference's own value is its floor),
and the adjusted Rand index between each noisy point's nearest centroid and its clean point's
reference cluster.
"""

import json
import sys
import time

import numpy as np


def load(path, d):
    return np.fromfile(path, dtype="<f4").reshape(-1, int(d))


def nearest(points, centroids, chunk=200_000):
    """Index and squared distance of the nearest centroid, a chunk at a time (1M points)."""
    c = np.asarray(centroids, dtype=np.float64)
    labels, distances = [], []
    for start in range(0, len(points), chunk):
        p = points[start:start + chunk].astype(np.float64)
        d2 = (p * p).sum(1)[:, None] - 2 * p @ c.T + (c * c).sum(1)[None, :]
        i = d2.argmin(1)
        labels.append(i)
        distances.append(np.maximum(d2[np.arange(len(p)), i], 0))
    return np.concatenate(labels), np.concatenate(distances)


def cluster(method, noisy, d, k, seed, out):
    x = np.ascontiguousarray(load(noisy, d))
    k, seed = int(k), int(seed)
    started = time.perf_counter()
    if method == "faiss":
        import faiss
        # All points (faiss would otherwise train on a sample of 256 per centroid).
        km = faiss.Kmeans(x.shape[1], k, niter=100, nredo=3, seed=seed, verbose=False,
                          max_points_per_centroid=len(x) // k + 1)
        km.train(x)
        centroids = km.centroids
    elif method == "kmeans":
        from sklearn.cluster import KMeans
        centroids = KMeans(k, n_init=3, random_state=seed).fit(x).cluster_centers_
    elif method == "minibatch":
        from sklearn.cluster import MiniBatchKMeans
        centroids = MiniBatchKMeans(k, n_init=3, batch_size=4096, random_state=seed).fit(x).cluster_centers_
    else:
        raise SystemExit(f"unknown method {method}")
    seconds = time.perf_counter() - started
    json.dump(np.asarray(centroids, dtype=np.float64).tolist(), open(out, "w"))
    print(json.dumps({"seconds": round(seconds, 3)}))


def evaluate(clean_path, noisy_path, d, k, centroid_files):
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score
    clean, noisy = load(clean_path, d), load(noisy_path, d)
    reference = KMeans(int(k), n_init=10, random_state=0).fit(clean)
    truth = reference.labels_[np.arange(len(noisy)) % len(clean)]
    result = {"reference_clean_objective": float(reference.inertia_ / len(clean)), "methods": {}}
    for path in centroid_files:
        centroids = json.load(open(path))
        labels, noisy_d2 = nearest(noisy, centroids)
        _, clean_d2 = nearest(clean, centroids)
        result["methods"][path] = {
            "noisy_objective": float(noisy_d2.mean()),
            "clean_objective": float(clean_d2.mean()),
            "ari": float(adjusted_rand_score(truth, labels)),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    if sys.argv[1] == "evaluate":
        evaluate(*sys.argv[2:6], sys.argv[6:])
    else:
        cluster(*sys.argv[1:7])
