#!/usr/bin/env python3
"""Converts Natural Earth's 110m land (TopoJSON, from the npm package world-atlas) into the
SVG path the dashboard's world map draws. Run once; its output is committed.

    d=$(mktemp -d) && (cd "$d" && npm pack world-atlas@2.0.2 && tar xzf world-atlas-2.0.2.tgz)
    scripts/land-110m-to-svg-path.py "$d/package/land-110m.json" \
        > crates/status-http/assets/land-110m.svgpath

The projection is equirectangular on a grid of 1/STEP degree: x = (lon + 180) * STEP,
y = (90 - lat) * STEP, so the whole world is the box 0 0 360*STEP 180*STEP (the dashboard's
viewBox); a ring that crosses the antimeridian is cut there into its two sides. Coordinates are rounded to the grid, points that round onto the previous one are
dropped, and each ring is one absolute move followed by relative lines ("M x y l dx dy ...
z"), which keeps the path small. Standard library only.
"""
import json
import sys

STEP = 4  # grid points per degree: 0.25 degree, under a pixel on a 1200 px wide map


def decode_arcs(topo):
    """The arcs as lists of (lon, lat): delta-decoded and de-quantized."""
    (sx, sy), (tx, ty) = topo["transform"]["scale"], topo["transform"]["translate"]
    arcs = []
    for arc in topo["arcs"]:
        x = y = 0
        points = []
        for dx, dy in arc:
            x += dx
            y += dy
            points.append((x * sx + tx, y * sy + ty))
        arcs.append(points)
    return arcs


def ring_points(ring, arcs):
    """A ring (a list of arc indexes; ~i is arc i reversed) as one list of points."""
    points = []
    for index in ring:
        arc = arcs[index] if index >= 0 else list(reversed(arcs[~index]))
        # Consecutive arcs share their joining point.
        points.extend(arc if not points else arc[1:])
    return points


def polygons(geometry):
    kind = geometry["type"]
    if kind == "Polygon":
        return [geometry["arcs"]]
    if kind == "MultiPolygon":
        return geometry["arcs"]
    if kind == "GeometryCollection":
        return [p for g in geometry["geometries"] for p in polygons(g)]
    return []


def clip(ring, keep):
    """Sutherland-Hodgman: the part of a ring where keep(lon) holds, cut at lon = +-180."""
    out = []
    for a, b in zip(ring, ring[1:] + ring[:1]):
        if keep(a[0]):
            out.append(a)
        if keep(a[0]) != keep(b[0]):
            edge = 180 if max(a[0], b[0]) > 180 else -180
            t = (edge - a[0]) / (b[0] - a[0])
            out.append((edge, a[1] + t * (b[1] - a[1])))
    return out


def split_antimeridian(ring):
    """The ring as drawn on a map cut at the antimeridian: a ring that crosses it
    (Chukotka, Wrangel Island, Fiji) becomes its part on each side, closed along the map's
    edge. A ring around a pole (Antarctica) stays as it is."""
    unwrapped = [ring[0]]
    for lon, lat in ring[1:]:
        prev = unwrapped[-1][0]
        while lon - prev > 180:
            lon -= 360
        while lon - prev < -180:
            lon += 360
        unwrapped.append((lon, lat))
    lons = [lon for lon, _ in unwrapped]
    if abs(unwrapped[-1][0] - unwrapped[0][0]) > 180 or (min(lons) >= -180 and max(lons) <= 180):
        return [ring]
    if max(lons) > 180:
        inside = clip(unwrapped, lambda lon: lon <= 180)
        outside = [(lon - 360, lat) for lon, lat in clip(unwrapped, lambda lon: lon >= 180)]
    else:
        inside = clip(unwrapped, lambda lon: lon >= -180)
        outside = [(lon + 360, lat) for lon, lat in clip(unwrapped, lambda lon: lon <= -180)]
    return [part for part in (inside, outside) if len(part) >= 3]


def grid(lon, lat):
    return round((lon + 180) * STEP), round((90 - lat) * STEP)


def path_of(rings):
    out = []
    for ring in rings:
        cells = []
        for lon, lat in ring:
            cell = grid(lon, lat)
            if not cells or cells[-1] != cell:
                cells.append(cell)
        if len(cells) > 1 and cells[0] == cells[-1]:
            cells.pop()  # "z" closes the ring
        if len(cells) < 3:
            continue  # smaller than the grid: invisible
        x, y = cells[0]
        parts = [f"M{x} {y}l"]
        numbers = []
        for nx, ny in cells[1:]:
            numbers += [nx - x, ny - y]
            x, y = nx, ny
        # Numbers separated by a space, or by nothing before a minus sign.
        text = ""
        for n in numbers:
            s = str(n)
            text += s if (not text or s.startswith("-")) else " " + s
        parts.append(text + "z")
        out.append("".join(parts))
    return "".join(out)


def main():
    topo = json.load(open(sys.argv[1]))
    arcs = decode_arcs(topo)
    rings = [
        part
        for poly in polygons(topo["objects"]["land"])
        for r in poly
        for part in split_antimeridian(ring_points(r, arcs))
    ]
    sys.stdout.write(path_of(rings) + "\n")


if __name__ == "__main__":
    main()
