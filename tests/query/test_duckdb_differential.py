"""Differential tests: every query DuckDB answers must equal Spark's answer, names and types.

Small generated tables are written by Spark as Parquet (one stage spans two directories),
registered as Spark views, and queried through both engines. A query DuckDB refuses is
fine; a query DuckDB answers differently is a bug. Queries Spark rejects at run time
(overflow, division by zero) must be refused too.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from jupyter_dataflow.query.duckdb_engine import run_duckdb
from jupyter_dataflow.query.duckdb_translate import transpile
from jupyter_dataflow.query.duckdb_types import DuckdbRefusal

pytestmark = pytest.mark.spark

UTC = timezone.utc
STRINGS = [
    "alpha", "beta", "gamma", "Alpha", "abc", "a_b", "x_y", "xylophone", "zeta", "", "  pad  ",
    "héllo", "Ärger", "naïve", "straße", "İstanbul", "😀 smile", "e\u0301", "ǅemal", "日本語",
    "tab\there", "quote'd", "MiXeD", "b", None,
]


def _nums() -> list[tuple[Any, ...]]:
    rng = random.Random(7)
    doubles = [None, float("nan"), -0.0, 0.0, 1.5, -2.25, 1e-3, 123456.789, 0.1, 2.675]
    rows = []
    for n in range(1, 61):
        i = None if n % 9 == 0 else rng.randint(-40, 40)
        if n in (3, 33):
            i = 0
        b = None if n % 11 == 0 else rng.randint(-10**12, 10**12)
        d = doubles[n % len(doubles)] if n <= 20 else (None if n % 13 == 0 else rng.uniform(-1000, 1000))
        m = None if n % 7 == 0 else Decimal(rng.randint(-99999, 99999)) / 100
        m2 = None if n % 10 == 0 else Decimal(rng.randint(-10**9, 10**9)) / 10000
        s = STRINGS[n % len(STRINGS)] if n <= 25 else STRINGS[rng.randrange(len(STRINGS))]
        g = [None, "a", "b", "c", "Ä"][n % 5]
        dt = None if n % 8 == 0 else date(2023, 12, 25) + timedelta(days=rng.randint(0, 70))
        ts = None if n % 12 == 0 else datetime(2024, 1, 1, tzinfo=UTC) + timedelta(
            seconds=rng.randint(0, 40 * 86400), microseconds=rng.choice([0, 1, 999999]))
        bo = None if n % 6 == 0 else n % 2 == 0
        f = None if n % 5 == 0 else rng.choice([0.1, 1.5, -3.25, 100.0, 2.5])
        ti = None if n % 4 == 0 else rng.randint(-100, 100)
        si = rng.randint(-30000, 30000)
        rows.append((n, g, i, b, d, m, m2, s, dt, ts, bo, f, ti, si))
    return rows


NUMS_SCHEMA = (
    "id INT, g STRING, i INT, b BIGINT, d DOUBLE, m DECIMAL(10,2), m2 DECIMAL(18,4), s STRING, "
    "dt DATE, ts TIMESTAMP, bo BOOLEAN, f FLOAT, ti TINYINT, si SMALLINT"
)
DIMS = [(1, "one", "north", Decimal("1.5"), "A1"), (2, "two", "south", Decimal("0.5"), "B2"),
        (3, "three", "north", None, None), (5, "five", "east", Decimal("2.0"), "C3"),
        (8, "eight", None, Decimal("-1.0"), "a1"), (None, "nokey", "west", Decimal("3.0"), "Z"),
        (13, "thirteen", "south", Decimal("1.0"), "B2")]
DIMS_SCHEMA = "key INT, name STRING, region STRING, weight DECIMAL(5,1), `Code` STRING"
EVENTS_SCHEMA = "id BIGINT, key INT, amount DECIMAL(12,2), qty INT, at TIMESTAMP, day DATE, local TIMESTAMP_NTZ, note STRING"


def _events(part: int) -> list[tuple[Any, ...]]:
    rng = random.Random(100 + part)
    rows = []
    for n in range(20):
        at = datetime(2024, 1, 1, 20, tzinfo=UTC) + timedelta(hours=rng.randint(0, 96), minutes=rng.randint(0, 59))
        rows.append((part * 100 + n, rng.choice([1, 2, 3, 5, 8, 21, None]),
                     None if n == 7 else Decimal(rng.randint(0, 500000)) / 100, rng.randint(0, 9),
                     at, at.date(), at.replace(tzinfo=None), rng.choice(["ok", "late", None, "émis"])))
    return rows


# Modes: "o" = ORDER BY fixes the row order, "b" = compare as bags, "c" = compare row counts
CORPUS: list[tuple[str, str]] = [(q.split("|", 1)[0], q.split("|", 1)[1].strip()) for q in """
b|SELECT id, i, s FROM nums WHERE i > 10
b|SELECT * FROM nums WHERE g = 'a'
b|SELECT id FROM nums WHERE i IS NULL
b|SELECT id FROM nums WHERE i IS NOT NULL AND b > 0
b|SELECT id, d FROM nums WHERE d > 0.5
b|SELECT id FROM nums WHERE d = d
b|SELECT id FROM nums WHERE d <> 0
b|SELECT id FROM nums WHERE NOT (i > 0)
b|SELECT id FROM nums WHERE i BETWEEN -10 AND 10
b|SELECT id FROM nums WHERE g IN ('a', 'b')
b|SELECT id FROM nums WHERE g NOT IN ('a', 'b')
b|SELECT id FROM nums WHERE i IN (1, 2, NULL)
b|SELECT id FROM nums WHERE i NOT IN (1, 2, NULL)
b|SELECT id FROM nums WHERE s LIKE 'a%'
b|SELECT id FROM nums WHERE s LIKE '%ß%'
b|SELECT id FROM nums WHERE s LIKE '_b%'
b|SELECT id FROM nums WHERE s NOT LIKE '%a%'
b|SELECT id, s FROM nums WHERE s LIKE 'x\\_%'
b|SELECT id FROM nums WHERE bo
b|SELECT id FROM nums WHERE bo IS NOT TRUE
b|SELECT id FROM nums WHERE dt >= '2024-01-15'
b|SELECT id FROM nums WHERE dt = DATE '2024-01-01' OR dt = '2024-01-20'
b|SELECT id FROM nums WHERE ts >= '2024-01-10 12:00:00'
b|SELECT id FROM nums WHERE ts < TIMESTAMP '2024-01-05 00:00:00'
b|SELECT id FROM nums WHERE dt < ts
b|SELECT id FROM nums WHERE m > 10.5
b|SELECT id FROM nums WHERE m = i
b|SELECT id FROM nums WHERE b > i * 1000
b|SELECT id FROM nums WHERE i <=> NULL
b|SELECT id, i <=> b AS eq FROM nums
b|SELECT id, i = b AS eq, i < m AS lt FROM nums
b|SELECT id, i + 1 AS a, i - b AS s, i * 2 AS m FROM nums
b|SELECT id, i / 4 AS q FROM nums
b|SELECT id, 100 / i AS q FROM nums WHERE i <> 0
b|SELECT id, i div 3 AS q, i % 3 AS r, -i % 7 AS r2 FROM nums
b|SELECT id, -i AS n, -m AS nm, -d AS nd FROM nums
b|SELECT id, b * 2 AS x, b + i AS y FROM nums
b|SELECT id, m * 2 AS x, m + m AS y, m - 1 AS z FROM nums
b|SELECT id, m * m AS sq, m * m2 AS mm FROM nums
b|SELECT id, i + 0.5 AS x, b * 1.5 AS y FROM nums
b|SELECT id, d * 2 AS x, d + i AS y, d - m AS z FROM nums
b|SELECT id, d / 3 AS x, i / b AS q FROM nums WHERE b <> 0
b|SELECT id, d % 2 AS r FROM nums WHERE d <> 0
b|SELECT id, abs(i) AS a, abs(m) AS am, abs(d) AS ad FROM nums
b|SELECT id, ti + 1 AS x, si * 2 AS y, ti + si AS z FROM nums
b|SELECT id, floor(d) AS fl, ceil(d) AS ce FROM nums WHERE abs(d) < 1e6
b|SELECT id, floor(m) AS fl, ceil(m) AS ce, floor(i) AS fi FROM nums
b|SELECT id, round(m, 1) AS r1, round(m) AS r0, round(m, 2) AS r2, round(m, 3) AS r3 FROM nums
b|SELECT id, round(i, 1) AS r, round(m2, 2) AS r2 FROM nums
b|SELECT id, sqrt(abs(d)) AS r, sqrt(i) AS n FROM nums
b|SELECT id, pow(i, 2) AS p, power(2, ti) AS p2 FROM nums
b|SELECT id, sign(i) AS sg, signum(d) AS sd, sign(m) AS sm FROM nums
b|SELECT id, greatest(i, b) AS gr, least(i, 0) AS le, greatest(m, i, 0) AS g3 FROM nums
b|SELECT id, greatest(d, 0.5) AS gr, least(d, i) AS le FROM nums
b|SELECT id, CAST(i AS BIGINT) AS a, CAST(i AS DOUBLE) AS c, CAST(i AS DECIMAL(12,2)) AS e FROM nums
b|SELECT id, CAST(m AS INT) AS a, CAST(m AS DECIMAL(5,1)) AS b2, CAST(m AS DOUBLE) AS c FROM nums
b|SELECT id, CAST(d AS INT) AS a, CAST(d AS BIGINT) AS b2 FROM nums WHERE abs(d) < 1e6
b|SELECT id, CAST(i AS STRING) AS a, CAST(bo AS STRING) AS b2, CAST(bo AS INT) AS c FROM nums
b|SELECT id, CAST(dt AS TIMESTAMP) AS a, CAST(ts AS DATE) AS b2 FROM nums
b|SELECT id, CAST('2024-02-03' AS DATE) AS a, CAST('42' AS BIGINT) AS b2, CAST('1.25' AS DECIMAL(6,3)) AS c FROM nums WHERE id < 3
b|SELECT id, i::bigint AS x, CAST(ti AS INT) AS t, CAST(i AS BOOLEAN) AS ib FROM nums
b|SELECT id, CAST(f AS DOUBLE) AS fd, CAST(i AS FLOAT) AS fi FROM nums
b|SELECT id, coalesce(i, 0) AS a, nvl(s, 'none') AS b2, ifnull(d, -1.0) AS c FROM nums
b|SELECT id, nullif(i, 0) AS a, nullif(s, '') AS b2 FROM nums
b|SELECT id, nvl2(i, 'has', 'none') AS a FROM nums
b|SELECT id, isnull(i) AS a, isnotnull(s) AS b2 FROM nums
b|SELECT count(*) AS n, count(i) AS ni, count(s) AS ns, count(d) AS nd FROM nums
b|SELECT id, CASE WHEN i IS NULL THEN 'null' WHEN i > 0 THEN 'pos' ELSE 'nonpos' END AS c FROM nums
b|SELECT id, CASE g WHEN 'a' THEN 1 WHEN 'b' THEN 2 END AS c FROM nums
b|SELECT id, if(i > 0, i, -i) AS a, if(bo, 'yes', NULL) AS y FROM nums
b|SELECT id, CASE WHEN bo THEN m ELSE i END AS c FROM nums
b|SELECT id, CASE WHEN bo THEN d ELSE m END AS c, CASE WHEN bo THEN b ELSE i END AS c2 FROM nums
b|SELECT id, coalesce(m, i, 0) AS c, coalesce(dt, DATE '2000-01-01') AS cd FROM nums
b|SELECT g, count(*) AS n FROM nums GROUP BY g
b|SELECT g, sum(i) AS s, min(i) AS mn, max(i) AS mx FROM nums GROUP BY g
b|SELECT g, avg(i) AS a, avg(d) AS ad, avg(b) AS ab FROM nums GROUP BY g
b|SELECT g, sum(m) AS s, min(m) AS mn, max(m) AS mx, sum(m2) AS s2 FROM nums GROUP BY g
b|SELECT g, sum(d) AS s FROM nums WHERE abs(d) < 1e6 GROUP BY g
b|SELECT g, count(DISTINCT i) AS di, count(DISTINCT s) AS ds FROM nums GROUP BY g
b|SELECT count(DISTINCT d) AS n FROM nums
b|SELECT d, count(*) AS n FROM nums GROUP BY d
b|SELECT sum(b) AS s, sum(DISTINCT i) AS sd, avg(DISTINCT i) AS ad FROM nums
b|SELECT g, stddev(d) AS sd, variance(i) AS v, stddev_pop(i) AS sp, var_pop(m) AS vp, var_samp(b) AS vs FROM nums WHERE abs(d) < 1e6 GROUP BY g
b|SELECT count_if(i > 0) AS c, bool_and(bo) AS ba, bool_or(bo) AS bor FROM nums
b|SELECT g, max(s) AS mx, min(s) AS mn FROM nums GROUP BY g
b|SELECT g, max(dt) AS mx, min(ts) AS mn, max(bo) AS mb FROM nums GROUP BY g
b|SELECT g, count(*) AS n FROM nums GROUP BY g HAVING count(*) > 11
b|SELECT g, sum(i) AS total FROM nums GROUP BY g HAVING total > 0
b|SELECT g AS grp, count(*) AS n FROM nums GROUP BY grp
b|SELECT g, count(*) AS n FROM nums GROUP BY 1
b|SELECT count(*) FROM nums
b|SELECT g, count(*), sum(i), max(s), min(d), avg(i) FROM nums GROUP BY g
b|SELECT count(DISTINCT g), count(1) FROM nums
b|SELECT max(f) AS mf, min(f) AS nf, sum(f) AS sf, avg(f) AS af FROM nums
b|SELECT sum(ti) AS s, sum(si) AS s2, avg(ti) AS a, max(ti) AS mt FROM nums
b|SELECT g, sum(i) FILTER (WHERE i > 0) AS sp, count(*) FILTER (WHERE bo) AS cb FROM nums GROUP BY g
b|SELECT year(dt) AS y, month(dt) AS mo, count(*) AS n FROM nums GROUP BY year(dt), month(dt)
b|SELECT sum(i) AS s, max(s) AS mx, avg(d) AS a FROM nums WHERE 1 = 0
b|SELECT count(*) AS n FROM nums WHERE 1 = 0
b|SELECT DISTINCT g FROM nums
b|SELECT DISTINCT g, bo FROM nums
b|SELECT n.id, d.name FROM nums n JOIN dims d ON n.i = d.key
b|SELECT n.id, d.name FROM nums n LEFT JOIN dims d ON n.i = d.key
b|SELECT n.id, d.name FROM nums n RIGHT JOIN dims d ON n.i = d.key
b|SELECT n.id, d.key FROM nums n FULL OUTER JOIN dims d ON n.i = d.key
b|SELECT n.id FROM nums n LEFT SEMI JOIN dims dm ON n.i = dm.key
b|SELECT n.id FROM nums n LEFT ANTI JOIN dims dm ON n.i = dm.key
b|SELECT n.id, d.name FROM nums n CROSS JOIN dims d WHERE n.id < 4
b|SELECT n.id, d.name FROM nums n, dims d WHERE n.i = d.key AND d.region = 'north'
b|SELECT d.region, count(*) AS n, sum(e.amount) AS total FROM events e JOIN dims d ON e.key = d.key GROUP BY d.region
b|SELECT e.id, d.weight * e.qty AS w FROM events e LEFT JOIN dims d ON e.key = d.key
b|SELECT * FROM dims d JOIN dims d2 ON d.key = d2.key
b|SELECT n.*, d.name FROM nums n JOIN dims d ON n.i = d.key
b|SELECT id FROM nums WHERE i IN (SELECT key FROM dims)
b|SELECT id FROM nums WHERE i NOT IN (SELECT key FROM dims)
b|SELECT id FROM nums WHERE i NOT IN (SELECT key FROM dims WHERE key IS NOT NULL)
b|SELECT id FROM nums n WHERE EXISTS (SELECT 1 FROM dims d WHERE d.key = n.i)
b|SELECT id FROM nums n WHERE NOT EXISTS (SELECT 1 FROM dims d WHERE d.key = n.i)
b|SELECT id, (SELECT max(key) FROM dims) AS mk FROM nums
b|SELECT id FROM nums WHERE i > (SELECT avg(key) FROM dims)
b|SELECT n.id, d.name FROM nums n JOIN dims d ON n.i = d.key AND d.weight > 1.0
b|SELECT n.g, d.region, count(*) AS c FROM nums n JOIN dims d ON n.i = d.key GROUP BY n.g, d.region
b|SELECT e.key, sum(e.amount * e.qty) AS rev, max(e.amount) AS top FROM events e GROUP BY e.key
b|WITH pos AS (SELECT * FROM nums WHERE i > 0) SELECT g, count(*) AS n FROM pos GROUP BY g
b|WITH a AS (SELECT g, sum(i) AS s FROM nums GROUP BY g), b AS (SELECT max(s) AS m FROM a) SELECT a.g FROM a, b WHERE a.s = b.m
b|SELECT * FROM (SELECT g, count(*) AS n FROM nums GROUP BY g) t WHERE n > 3
b|SELECT x.total FROM (SELECT sum(amount) AS total FROM events) x
b|SELECT g FROM nums UNION SELECT region FROM dims
b|SELECT g FROM nums UNION ALL SELECT region FROM dims
b|SELECT i FROM nums INTERSECT SELECT key FROM dims
b|SELECT i FROM nums EXCEPT SELECT key FROM dims
o|SELECT key FROM dims UNION ALL SELECT key FROM dims ORDER BY key
b|SELECT * FROM (SELECT count(*) FROM nums)
o|SELECT id, row_number() OVER (ORDER BY id) AS rn FROM nums ORDER BY id
b|SELECT id, rank() OVER (PARTITION BY g ORDER BY i) AS r, dense_rank() OVER (PARTITION BY g ORDER BY i) AS dr FROM nums
b|SELECT id, sum(i) OVER (PARTITION BY g) AS s FROM nums
b|SELECT id, sum(i) OVER (PARTITION BY g ORDER BY id) AS running FROM nums
b|SELECT id, avg(d) OVER (ORDER BY id ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS ma FROM nums
b|SELECT id, lag(i) OVER (ORDER BY id) AS prev, lead(i, 2, 0) OVER (ORDER BY id) AS nxt FROM nums
b|SELECT id, ntile(4) OVER (ORDER BY id) AS q FROM nums
b|SELECT id, percent_rank() OVER (ORDER BY id) AS pr, cume_dist() OVER (ORDER BY i) AS cd FROM nums
b|SELECT id, count(*) OVER (PARTITION BY g) AS n, max(m) OVER (PARTITION BY g) AS mx FROM nums
b|SELECT id, min(ts) OVER (PARTITION BY dt) AS first_ts FROM nums
b|SELECT id, sum(m) OVER (ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS cm FROM nums
b|SELECT id, row_number() OVER (PARTITION BY g ORDER BY i DESC, id) AS rn FROM nums
b|SELECT * FROM (SELECT id, g, row_number() OVER (PARTITION BY g ORDER BY id) AS rn FROM nums) t WHERE rn = 1
b|SELECT id, sum(i) OVER (ORDER BY i) AS s FROM nums
b|SELECT id, lag(s) OVER (PARTITION BY g ORDER BY id) AS ps, lead(m, 1, 0) OVER (ORDER BY id) AS nm FROM nums
b|SELECT id, sum(i) OVER (ORDER BY id ROWS BETWEEN 1 PRECEDING AND 1 FOLLOWING) AS w FROM nums
o|SELECT id, i FROM nums ORDER BY i, id
o|SELECT id, i FROM nums ORDER BY i DESC, id
o|SELECT id, i FROM nums ORDER BY i NULLS LAST, id
o|SELECT id, i FROM nums ORDER BY i DESC NULLS FIRST, id
o|SELECT id, s FROM nums ORDER BY s, id
o|SELECT id, d FROM nums ORDER BY d, id
o|SELECT id, d FROM nums ORDER BY d DESC, id
o|SELECT id, dt FROM nums ORDER BY dt DESC, id
o|SELECT id, ts FROM nums ORDER BY ts, id
o|SELECT g, count(*) AS n FROM nums GROUP BY g ORDER BY n DESC, g
o|SELECT id FROM nums ORDER BY id LIMIT 5
o|SELECT id FROM nums ORDER BY id DESC LIMIT 5 OFFSET 2
c|SELECT id FROM nums LIMIT 7
c|SELECT * FROM events LIMIT 3
o|SELECT id, m FROM nums ORDER BY m DESC, id
o|SELECT id, bo FROM nums ORDER BY bo, id
o|SELECT id, i FROM nums ORDER BY 2, 1
o|SELECT id, i * -1 AS neg FROM nums ORDER BY neg, id
o|SELECT upper(g) AS g, id FROM nums ORDER BY g, id
o|SELECT g, max(i) AS mx FROM nums GROUP BY g ORDER BY max(i) DESC NULLS LAST
b|SELECT id, substr(s, 2) AS a, substr(s, 2, 3) AS b2, substr(s, -2) AS c, substr(s, 0, 2) AS d2, substr(s, -10, 3) AS e FROM nums
b|SELECT id, substring(s, 3, 0) AS z, substr(s, -3, 2) AS y, substr(s, 1, -1) AS n FROM nums
b|SELECT id, left(s, 3) AS l, right(s, 3) AS r, left(s, 0) AS l0 FROM nums
b|SELECT id, length(s) AS n, char_length(s) AS n2 FROM nums
b|SELECT id, upper(s) AS u, lower(s) AS l FROM nums
b|SELECT id, upper(s) AS u, lower(s) AS l FROM nums WHERE id IN (1, 2, 4, 5, 6, 11, 12, 13, 22)
b|SELECT id, upper(g) AS u, lower(g) AS l FROM nums
b|SELECT id, concat(s, '!') AS c, concat(g, s) AS c2, s || '-' || g AS c3 FROM nums
b|SELECT id, concat('id=', id) AS c, concat(s) AS c1 FROM nums
b|SELECT id, concat_ws('-', g, s) AS c, concat_ws(',', s, 'x') AS c2 FROM nums
b|SELECT id, trim(s) AS t, ltrim(s) AS l, rtrim(s) AS r FROM nums
b|SELECT id, replace(s, 'a', 'A') AS r, replace(s, 'l') AS r2 FROM nums
b|SELECT id, lpad(g, 5, '*') AS l, rpad(g, 3, 'xy') AS r, lpad(s, 2, '-') AS l2 FROM nums
b|SELECT id, instr(s, 'a') AS p, locate('l', s) AS p2 FROM nums
b|SELECT id FROM nums WHERE startswith(s, 'a') OR endswith(s, 'e') OR contains(s, 'ß')
b|SELECT id, repeat(g, 2) AS r FROM nums
b|SELECT s, count(*) AS n FROM nums GROUP BY s
b|SELECT id FROM nums WHERE s = 'héllo' OR s = '日本語'
b|SELECT id FROM nums WHERE s > 'm'
b|SELECT id, 'it' 's' AS x, 'a\\tb' AS y, "dq" AS z FROM nums WHERE id = 1
b|SELECT id, year(dt) AS y, month(dt) AS mo, day(dt) AS d2, dayofmonth(dt) AS dm, quarter(dt) AS q FROM nums
b|SELECT id, dayofweek(dt) AS dw, weekday(dt) AS wd, dayofyear(dt) AS dy, weekofyear(dt) AS wy FROM nums
b|SELECT id, year(ts) AS y, hour(ts) AS h, minute(ts) AS mi, second(ts) AS se, dayofweek(ts) AS dw FROM nums
b|SELECT id, date_add(dt, 10) AS a, date_sub(dt, 40) AS s2, dt + 1 AS p, dt - 2 AS m2 FROM nums
b|SELECT id, date_add(dt, ti) AS a FROM nums
b|SELECT id, datediff(dt, DATE '2024-01-01') AS dd, datediff('2024-12-31', dt) AS dd2 FROM nums
b|SELECT id, date_trunc('MONTH', ts) AS mt, date_trunc('DAY', ts) AS dt2, date_trunc('HOUR', ts) AS ht, date_trunc('WEEK', ts) AS wk, date_trunc('YEAR', dt) AS yt FROM nums
b|SELECT id, trunc(dt, 'MM') AS a, trunc(dt, 'YEAR') AS b2, trunc(dt, 'WEEK') AS c, trunc(dt, 'QUARTER') AS q FROM nums
b|SELECT id, last_day(dt) AS l, add_months(dt, 1) AS a, add_months(dt, -13) AS b2 FROM nums
b|SELECT id, to_date(ts) AS d2, CAST(ts AS DATE) AS d3 FROM nums
b|SELECT to_date('2024-03-01') AS d FROM dims WHERE key = 1
b|SELECT id, extract(YEAR FROM dt) AS y, extract(HOUR FROM ts) AS h, extract(MONTH FROM ts) AS mo FROM nums
b|SELECT date_trunc('DAY', at) AS day, count(*) AS n FROM events GROUP BY date_trunc('DAY', at)
b|SELECT day, sum(amount) AS total, count(note) AS notes FROM events GROUP BY day
b|SELECT id FROM events WHERE at BETWEEN '2024-01-02' AND '2024-01-03 12:00:00'
b|SELECT id FROM nums WHERE dt IN (DATE '2024-01-01', DATE '2024-01-15')
b|SELECT id FROM nums WHERE dt IN ('2024-01-01', '2024-01-15', '2024-02-02')
b|SELECT max(ts) AS mx, min(dt) AS mn FROM nums
b|SELECT id, local, hour(local) AS h, CAST(local AS DATE) AS d FROM events
b|SELECT id FROM events WHERE local >= '2024-01-03 00:00:00'
b|SELECT id, m * 3 AS x, m + 0.005 AS y, m - i AS z FROM nums
b|SELECT sum(amount) AS s, max(amount) AS mx, min(amount) AS mn FROM events
b|SELECT key, sum(amount) AS s, count(*) AS n FROM events GROUP BY key
b|SELECT * FROM events
b|SELECT * FROM events_us
b|SELECT e.id, e.at = u.at AS same, hour(u.at) AS h, date_trunc('HOUR', u.at) AS th FROM events e JOIN events_us u ON e.id = u.id
b|SELECT id FROM events_us WHERE at >= '2024-01-03 06:00:00' AND CAST(at AS DATE) <= '2024-01-04'
b|SELECT note, count(*) AS n FROM events GROUP BY note
b|SELECT ID, G, Nums.S FROM nums
b|SELECT `id`, `g` AS `Group` FROM nums WHERE `i` > 0
b|SELECT code, CODE AS c2, d.Code FROM dims d
b|SELECT * FROM dims
b|SELECT t.* FROM (SELECT id, i AS x FROM nums) t WHERE x > 0
b|SELECT COUNT(*), SUM(I), max(s), min(G) FROM nums
b|SELECT count(*) AS n FROM nums HAVING count(*) > 0
b|SELECT DISTINCT d FROM nums
b|SELECT a.id, b.id AS id2 FROM nums a JOIN nums b ON a.d = b.d WHERE a.id <= 20
b|SELECT id FROM nums WHERE s IN ('alpha', NULL) OR s = 'beta '
b|SELECT id, concat(s, NULL) AS c, s || NULL AS c2 FROM nums
b|SELECT id, CASE WHEN i <> 0 THEN 100 / i END AS q, CASE WHEN i = 0 THEN 0 ELSE 7 % i END AS r FROM nums
b|SELECT id FROM nums WHERE i <> 0 AND 100 / i > 1
b|SELECT add_months(DATE '2024-01-31', 1) AS a, add_months(DATE '2024-03-31', -1) AS b, last_day(DATE '2023-02-10') AS c, weekofyear(DATE '2024-12-30') AS w, dayofweek(DATE '2024-12-29') AS dw FROM dims WHERE key = 1
b|SELECT id, date_trunc('QUARTER', ts) AS q, date_trunc('MINUTE', ts) AS mi, date_trunc('SECOND', ts) AS se FROM nums
b|SELECT id, date_add(dt, -1) AS a, datediff(dt, dt) AS z FROM nums
b|SELECT g, count(*) AS n FROM nums GROUP BY g ORDER BY count(*), g
c|SELECT g FROM nums ORDER BY g LIMIT 3
b|SELECT id, i % -3 AS r, b / 3 AS x, i * 2147483647 AS big FROM nums WHERE abs(i) < 2
b|SELECT id, m = 10.50 AS eq, m2 > m AS gt FROM nums
b|SELECT id, CAST(m2 AS DOUBLE) AS x FROM nums
b|SELECT id, substr(s, 2, 100) AS a, substr(s, 100) AS b FROM nums
b|WITH x AS (SELECT id, g FROM nums), y AS (SELECT g, count(*) AS n FROM x GROUP BY g) SELECT x.id, y.n FROM x JOIN y ON x.g = y.g
b|SELECT n.g, (SELECT count(*) FROM dims) AS nd FROM nums n WHERE n.i IN (SELECT key FROM dims WHERE region = 'north')
b|SELECT id FROM nums n WHERE n.i IN (SELECT key FROM dims d WHERE d.region = n.g OR d.weight > 1.0)
b|WITH big AS (SELECT key FROM dims WHERE weight >= 1.5) SELECT id, (SELECT count(*) FROM big) AS nb FROM nums n WHERE EXISTS (SELECT 1 FROM big WHERE big.key = n.i)
b|SELECT g, sum(CASE WHEN bo THEN m ELSE 0 END) AS sm, coalesce(sum(i), 0) AS si, sum(i * 2) AS s2 FROM nums GROUP BY g
b|SELECT upper(g) AS ug, count(*) AS n FROM nums GROUP BY upper(g)
o|SELECT id FROM nums ORDER BY id LIMIT 0
o|SELECT key, NULL AS nothing, CASE WHEN key > 2 THEN NULL END AS n2 FROM dims WHERE key IS NOT NULL ORDER BY key
b|SELECT DISTINCT g, i > 0 AS pos FROM nums ORDER BY g, pos
b|SELECT id, 100 / i AS q FROM nums
b|SELECT id, i div 0 AS q FROM nums
b|SELECT id, i % 0 AS r FROM nums
b|SELECT CAST(b AS INT) AS x FROM nums
b|SELECT ti * ti AS x FROM nums
b|SELECT (SELECT key FROM dims) AS k FROM nums
b|SELECT sum(b * 10000000) AS s FROM nums
b|SELECT 2147483647 + i AS x FROM nums WHERE i > 0
""".strip().splitlines()]
# Spark's string escapes, written raw so that Python leaves the backslashes alone
CORPUS.append(("b", r"SELECT '\u0041' AS a, '\q' AS b, 'a\\b' AS c, '\%' AS d, '\101' AS e, "
                    r"'\x41' AS f, 'tab\there' AS g, 'it\'s' AS h FROM dims WHERE key = 1"))

# Queries whose answer depends on semantics DuckDB does not share: they must be refused.
UNSAFE = [
    ("SELECT from_json(s, 'a INT') AS j FROM nums", "from_json"),
    ("SELECT round(d, 2) AS r FROM nums", "round"),
    ("SELECT m / 3 AS q FROM nums", "decimal division"),
    ("SELECT avg(m) AS a FROM nums", "avg of a decimal"),
    ("SELECT CAST(s AS INT) AS x FROM nums", "CAST from string"),
    ("SELECT TRY_CAST(s AS INT) AS x FROM nums", "TRY_CAST"),
    ("SELECT CAST(d AS STRING) AS x FROM nums", "CAST from double"),
    ("SELECT CAST(d AS DECIMAL(10,2)) AS x FROM nums", "CAST from double"),
    ("SELECT s RLIKE 'a+' AS x FROM nums", "regexp"),
    ("SELECT s ILIKE 'A%' AS x FROM nums", "ILIKE"),
    ("SELECT reverse(s) AS x FROM nums", "reverse"),
    ("SELECT i + 1 FROM nums", "needs an alias"),
    ("SELECT i AS k FROM nums WHERE k > 1", "could mean"),
    ("SELECT upper(s) AS i, count(*) AS n FROM nums GROUP BY i", "could mean"),
    ("SELECT id, (SELECT max(key) FROM dims WHERE key < n.i) AS k FROM nums n", "correlated"),
    ("SELECT current_timestamp() AS now FROM nums", "current_timestamp"),
    ("SELECT collect_list(i) AS l FROM nums", "collect_list"),
    ("SELECT first(i) AS f FROM nums", "first"),
    ("SELECT date_format(dt, 'yyyy-MM') AS f FROM nums", "date_format"),
    ("SELECT row_number() OVER (PARTITION BY g) AS rn FROM nums", "needs ORDER BY"),
    ("SELECT id, f + 1 AS x FROM nums", "FLOAT"),
    ("SELECT id FROM nums WHERE f > 0.1", "FLOAT"),
    ("SELECT count(DISTINCT i, s) AS n FROM nums", "count(DISTINCT"),
    ("SELECT id FROM nums WHERE i = '1'", "comparing int with string"),
    ("SELECT id FROM nums WHERE dt > '2024-1-5'", "not a plain date"),
    ("SELECT * FROM nums n JOIN nums m USING (id)", "USING"),
    ("SELECT * FROM somewhere_else", "not a committed stage"),
    ("SELECT 'it''s' AS x FROM dims", "doubled quote"),
    ("SELECT x FROM nums LATERAL VIEW explode(array(1, 2)) t AS x", "LATERAL"),
    ("SELECT g, count(*) AS n FROM nums GROUP BY ROLLUP (g)", "ROLLUP"),
    ("SELECT percentile_approx(d, 0.5) AS p FROM nums", "percentile"),
    ("SELECT id, sum(i) OVER (ORDER BY i RANGE BETWEEN 1 PRECEDING AND CURRENT ROW) AS w FROM nums", "frames"),
]

TZ_QUERIES = [
    "SELECT id, ts, hour(ts) AS h, CAST(ts AS DATE) AS d, date_trunc('DAY', ts) AS td FROM nums",
    "SELECT id FROM nums WHERE ts >= '2024-01-10 00:00:00'",
    "SELECT id, CAST(dt AS TIMESTAMP) AS t, day(ts) AS dd FROM nums",
    "SELECT CAST(at AS DATE) AS day, count(*) AS n FROM events GROUP BY CAST(at AS DATE)",
    "SELECT id, at, hour(at) AS h, CAST(at AS DATE) AS d FROM events_us",
    "SELECT u.id FROM events e JOIN events_us u ON e.id = u.id AND e.at = u.at",
    "SELECT id, TIMESTAMP '2024-01-05 10:00:00' AS lit FROM nums WHERE id < 3",
    "SELECT date_trunc('DAY', TIMESTAMP '2024-03-10 12:00:00') AS dst, hour(TIMESTAMP '2024-03-10 03:30:00') AS h FROM dims WHERE key = 1",
]


@dataclass
class Outcome:
    spark: pa.Table | Exception
    duck: pa.Table | DuckdbRefusal


def write_stages(spark: Any, root: Path) -> dict[str, list[str]]:
    """Write the tables with Spark and register views. `events` spans two committed directories;
    `events_us` holds the same rows with timestamps stored as INT64 micros instead of INT96."""
    layout: dict[str, list[tuple[list[tuple[Any, ...]], str]]] = {
        "nums": [(_nums(), NUMS_SCHEMA)],
        "dims": [(DIMS, DIMS_SCHEMA)],
        "events": [(_events(1), EVENTS_SCHEMA), (_events(2), EVENTS_SCHEMA)],
        "events_us": [(_events(1), EVENTS_SCHEMA), (_events(2), EVENTS_SCHEMA)],
    }
    dirs: dict[str, list[str]] = {}
    for name, parts in layout.items():
        key = "spark.sql.parquet.outputTimestampType"
        old = spark.conf.get(key)
        spark.conf.set(key, "TIMESTAMP_MICROS" if name == "events_us" else "INT96")
        try:
            for k, (rows, schema) in enumerate(parts):
                path = str(root / name / f"part{k}")
                spark.createDataFrame(rows, schema).repartition(2).write.parquet(path)
                dirs.setdefault(name, []).append(path)
        finally:
            spark.conf.set(key, old)
        spark.read.parquet(*dirs[name]).createOrReplaceTempView(name)
    return dirs


@pytest.fixture(scope="module")
def stages(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, list[str]]]:
    dirs = write_stages(spark, tmp_path_factory.mktemp("stages"))
    yield dirs
    for name in dirs:
        spark.catalog.dropTempView(name)


def _spark(spark: Any, sql: str) -> pa.Table | Exception:
    try:
        return spark.sql(sql).toArrow()
    except Exception as err:  # Spark's answer may be an error; DuckDB must then refuse
        return err


@pytest.fixture(scope="module")
def outcomes(spark: Any, stages: dict[str, list[str]]) -> dict[str, Outcome]:
    queries = [q for _, q in CORPUS]
    with ThreadPoolExecutor(max_workers=4) as pool:  # overlap Spark's per-query overhead
        spark_results = list(pool.map(lambda q: _spark(spark, q), queries))
    return {q: Outcome(s, run_duckdb(q, stages)) for q, s in zip(queries, spark_results, strict=True)}


def _norm(value: Any) -> Any:
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else value
    return value


def _sort_key(row: tuple[Any, ...]) -> tuple[Any, ...]:
    key = []
    for v in row:
        if isinstance(v, float) and not math.isnan(v):
            v = float(f"{v:.9g}")
        key.append((v is None, type(v).__name__, v if v is not None else 0))
    return tuple(key)


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b or math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-300)
    return type(a) is type(b) and a == b


def _rows(table: pa.Table) -> list[tuple[Any, ...]]:
    return [tuple(_norm(v) for v in row.values()) for row in table.to_pylist()] if table.num_columns else []


def _assert_same(sql: str, mode: str, spark: pa.Table, duck: pa.Table) -> None:
    assert duck.column_names == spark.column_names, sql
    assert duck.schema.types == spark.schema.types, sql
    assert duck.num_rows == spark.num_rows, sql
    if mode == "c":
        return
    expected, actual = _rows(spark), _rows(duck)
    if mode == "b":
        expected, actual = sorted(expected, key=_sort_key), sorted(actual, key=_sort_key)
    for e, a in zip(expected, actual, strict=True):
        assert all(_same_value(x, y) for x, y in zip(e, a, strict=True)), f"{sql}\n spark: {e}\n duck:  {a}"


@pytest.mark.parametrize(("mode", "sql"), CORPUS, ids=[f"q{i:03d}" for i in range(len(CORPUS))])
def test_duckdb_answers_like_spark(outcomes: dict[str, Outcome], mode: str, sql: str) -> None:
    outcome = outcomes[sql]
    if isinstance(outcome.spark, Exception):
        assert isinstance(outcome.duck, DuckdbRefusal), f"Spark failed but DuckDB answered: {sql}"
        return
    if isinstance(outcome.duck, DuckdbRefusal):
        assert outcome.duck.reason, "a refusal must say why"
        return
    _assert_same(sql, mode, outcome.spark, outcome.duck)


def test_corpus_is_large_and_mostly_on_duckdb(outcomes: dict[str, Outcome]) -> None:
    assert len(CORPUS) >= 150
    answered = sum(not isinstance(o.duck, DuckdbRefusal) for o in outcomes.values())
    share = answered / len(outcomes)
    refused = {q: o.duck.reason for q, o in outcomes.items() if isinstance(o.duck, DuckdbRefusal)}
    assert share >= 0.6, f"only {share:.0%} ran on DuckDB; refused: {refused}"


@pytest.mark.parametrize(("sql", "reason"), UNSAFE, ids=[f"u{i:02d}" for i in range(len(UNSAFE))])
def test_unsafe_queries_are_refused(stages: dict[str, list[str]], sql: str, reason: str) -> None:
    result = run_duckdb(sql, stages)
    assert isinstance(result, DuckdbRefusal), sql
    assert reason.lower() in result.reason.lower(), result.reason


@pytest.mark.parametrize("sql", TZ_QUERIES)
def test_session_time_zone_is_honoured(spark: Any, stages: dict[str, list[str]], sql: str) -> None:
    zone = "America/New_York"
    old = spark.conf.get("spark.sql.session.timeZone")
    spark.conf.set("spark.sql.session.timeZone", zone)
    try:
        expected = spark.sql(sql).toArrow()
    finally:
        spark.conf.set("spark.sql.session.timeZone", old)
    duck = run_duckdb(sql, stages, timezone=zone)
    assert not isinstance(duck, DuckdbRefusal), duck
    _assert_same(sql, "b", expected, duck)


def test_limit_is_applied_in_the_engine(stages: dict[str, list[str]]) -> None:
    ordered = run_duckdb("SELECT id FROM nums ORDER BY id DESC LIMIT 10", stages, limit=3)
    assert isinstance(ordered, pa.Table)
    assert ordered.column("id").to_pylist() == [60, 59, 58]
    union = run_duckdb("SELECT key FROM dims UNION ALL SELECT key FROM dims", stages, limit=4)
    assert isinstance(union, pa.Table) and union.num_rows == 4


def test_refusals_for_stage_layouts(tmp_path: Path, stages: dict[str, list[str]]) -> None:
    assert isinstance(run_duckdb("SELECT * FROM nums", {"nums": ["s3a://bucket/nums"]}), DuckdbRefusal)
    assert isinstance(run_duckdb("SELECT * FROM nums", {"nums": [str(tmp_path / "missing")]}), DuckdbRefusal)
    (tmp_path / "empty").mkdir()
    assert isinstance(run_duckdb("SELECT * FROM nums", {"nums": [str(tmp_path / "empty")]}), DuckdbRefusal)
    mixed = {"nums": stages["nums"] + stages["dims"]}
    refusal = run_duckdb("SELECT * FROM nums", mixed)
    assert isinstance(refusal, DuckdbRefusal) and "schema" in refusal.reason


def test_transpile_names_relations_and_needs_types() -> None:
    schemas = {"orders": {"amount": "decimal(10,2)", "day": "date"}}
    sql = transpile("SELECT day, sum(amount) AS total FROM orders GROUP BY day ORDER BY day",
                    {"orders": "orders_v3"}, schemas=schemas)
    assert isinstance(sql, str)
    assert '"orders_v3"' in sql and "NULLS FIRST" in sql and "DECIMAL(20, 2)" in sql
    assert isinstance(transpile("SELECT * FROM orders", {"orders": "orders_v3"}), DuckdbRefusal)
