//! Two-dimensional PCA of a query's vector and its results' vectors, for the page's plot.
//! Hand-written because it is a dozen lines for at most a few hundred points: the top two
//! eigenvectors of the centred points' Gram matrix (n × n, n = points) by power iteration
//! with deflation, instead of a linear-algebra dependency for one small decomposition.

/// The points projected on their first two principal components, scaled so the largest
/// coordinate is 1 in absolute value (all zeros when the points do not vary). A component
/// the points do not span (fewer than three points, or collinear ones) is zero.
pub fn project_2d(points: &[&[f32]]) -> Vec<[f32; 2]> {
    let n = points.len();
    if n == 0 {
        return Vec::new();
    }
    let dim = points.iter().map(|p| p.len()).min().unwrap_or(0);
    let mean: Vec<f64> = (0..dim)
        .map(|j| points.iter().map(|p| p[j] as f64).sum::<f64>() / n as f64)
        .collect();
    let centred: Vec<Vec<f64>> = points
        .iter()
        .map(|p| (0..dim).map(|j| p[j] as f64 - mean[j]).collect())
        .collect();
    let mut gram = vec![vec![0.0f64; n]; n];
    for i in 0..n {
        for k in i..n {
            let d: f64 = centred[i].iter().zip(&centred[k]).map(|(x, y)| x * y).sum();
            gram[i][k] = d;
            gram[k][i] = d;
        }
    }
    let mut coords = vec![[0.0f32; 2]; n];
    for c in [0usize, 1] {
        // Deterministic start that is not orthogonal to a typical leading eigenvector.
        let mut v: Vec<f64> = (0..n).map(|i| 1.0 + (i as f64) * 0.37).collect();
        let mut lambda = 0.0;
        for _ in 0..200 {
            let w: Vec<f64> = (0..n)
                .map(|i| (0..n).map(|k| gram[i][k] * v[k]).sum())
                .collect();
            let norm = w.iter().map(|x| x * x).sum::<f64>().sqrt();
            if norm < 1e-12 {
                lambda = 0.0;
                break;
            }
            lambda = norm;
            v = w.into_iter().map(|x| x / norm).collect();
        }
        if lambda <= 1e-12 {
            break;
        }
        // A principal-component score is the Gram eigenvector scaled by sqrt(eigenvalue).
        for (p, vi) in coords.iter_mut().zip(&v) {
            p[c] = (vi * lambda.sqrt()) as f32;
        }
        for i in 0..n {
            for k in 0..n {
                gram[i][k] -= lambda * v[i] * v[k];
            }
        }
    }
    let max = coords
        .iter()
        .flat_map(|c| c.iter().map(|x| x.abs()))
        .fold(0.0f32, f32::max);
    if max > 0.0 {
        coords.iter_mut().for_each(|c| {
            c[0] /= max;
            c[1] /= max;
        });
    }
    coords
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_plane() {
        // Points on a 2-D plane embedded in 5-D: distances are kept up to scale.
        let raw: Vec<[f32; 2]> = vec![[0.0, 0.0], [3.0, 0.0], [0.0, 1.0], [3.0, 1.0], [1.5, 0.5]];
        let embed = |p: [f32; 2]| vec![p[0], p[1], 0.5 * p[0], 0.0, -p[1]];
        let vs: Vec<Vec<f32>> = raw.iter().map(|&p| embed(p)).collect();
        let refs: Vec<&[f32]> = vs.iter().map(|v| v.as_slice()).collect();
        let out = project_2d(&refs);
        let d = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y) * (x - y))
                .sum::<f32>()
                .sqrt()
        };
        let scale = d(&out[0], &out[3]) / d(&vs[0], &vs[3]);
        for i in 0..5 {
            for k in 0..5 {
                let want = d(&vs[i], &vs[k]) * scale;
                assert!((d(&out[i], &out[k]) - want).abs() < 1e-3, "{i} {k}");
            }
        }
        // The first component carries the wider spread.
        let spread = |c: usize| out.iter().map(|p| p[c].abs()).fold(0.0, f32::max);
        assert!(spread(0) > spread(1));
    }

    #[test]
    fn degenerate_inputs() {
        assert!(project_2d(&[]).is_empty());
        let one = [1.0f32, 2.0];
        assert_eq!(project_2d(&[&one]), vec![[0.0, 0.0]]);
        assert_eq!(project_2d(&[&one, &one]), vec![[0.0, 0.0]; 2]);
    }
}
