"""Code tables for the synthetic generator: names, places, diagnoses,
procedures, services, drugs and the profiles that tie them together.

Codes are real code-system values (ICD-10-CM/PCS without the dot as CCLF
carries them, HCPCS/CPT, revenue centers, MS-DRGs, place of service, CMS
provider specialties, BETOS, NDC-shaped product ids); amounts are rounded
national averages of the right order of magnitude, not fee schedules.
Tables are '|'-separated text so each reads like the code book it mimics.
"""

from __future__ import annotations

from typing import NamedTuple


def _rows(text: str) -> list[list[str]]:
    out = []
    for line in text.strip().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append([f.strip() for f in line.split("|")])
    return out


# ---- people and places --------------------------------------------------------

# Non-ASCII names on purpose: the writers must escape UTF-8 correctly.
FIRST_F = (
    "Mary Patricia Linda Barbara Elizabeth Jennifer Maria Susan Margaret Dorothy Lisa Nancy Karen Betty "
    "Helen Sandra Donna Carol Ruth Sharon Michelle Laura Sarah Kimberly Deborah Jessica Shirley Cynthia "
    "Angela Melissa Brenda Amy Anna Rebecca Virginia Kathleen Pamela Martha Debra Amanda Stephanie "
    "Carolyn Christine Marie Janet Catherine Frances Ann Joyce Diane Alice Julie Heather Teresa Doris "
    "Gloria Evelyn Jean Cheryl Mildred Katherine Joan Ashley Judith Rose Janice Kelly Nicole Judy "
    "Christina Kathy Theresa Beverly Denise Tammy Irene Jane Lori Rachel Marilyn Andrea Kathryn Louise "
    "Sara Anne Jacqueline Wanda Bonnie Julia Ruby Lois Tina Phyllis Norma Paula Diana Annie Lillian "
    "Emily Robin María José Zoë Renée Chloé Siobhán Mónica Inés Björk Søs Łucja Małgorzata Zofia "
    "Thảo Ngọc Hương Aiko Yūko Mei-Ling Ayşe Élodie Agnès Bénédicte Dagný Ximena Lucía Begoña"
).split()
FIRST_M = (
    "James John Robert Michael William David Richard Charles Joseph Thomas Christopher Daniel Paul Mark "
    "Donald George Kenneth Steven Edward Brian Ronald Anthony Kevin Jason Matthew Gary Timothy Larry "
    "Jeffrey Frank Scott Eric Stephen Andrew Raymond Gregory Joshua Jerry Dennis Walter Patrick Peter "
    "Harold Douglas Henry Carl Arthur Ryan Roger Joe Juan Jack Albert Jonathan Justin Terry Gerald "
    "Keith Samuel Willie Ralph Lawrence Nicholas Roy Benjamin Bruce Brandon Adam Harry Fred Wayne Billy "
    "Steve Louis Jeremy Aaron Randy Howard Eugene Carlos Russell Bobby Victor Martin Ernest Phillip "
    "Todd Jesse Craig Alan Shawn Clarence Sean Philip Chris Johnny Earl Jimmy Antonio José Jesús "
    "Björn François Jürgen Søren Łukasz Dvořák Hồ Đức Nguyễn-Văn Ömer Çağrı Ángel Íñigo Tomáš Jiří "
    "Håkon Ólafur Zoltán Grzegorz Ðorđe Rémi Noël Anaïs-Jean Kōji Dāvis"
).split()
LAST = (
    "Smith|Johnson|Williams|Brown|Jones|Garcia|Miller|Davis|Rodriguez|Martinez|Hernandez|Lopez|Gonzalez|"
    "Wilson|Anderson|Thomas|Taylor|Moore|Jackson|Martin|Lee|Perez|Thompson|White|Harris|Sanchez|Clark|"
    "Ramirez|Lewis|Robinson|Walker|Young|Allen|King|Wright|Scott|Torres|Nguyen|Hill|Flores|Green|Adams|"
    "Nelson|Baker|Hall|Rivera|Campbell|Mitchell|Carter|Roberts|Gomez|Phillips|Evans|Turner|Diaz|Parker|"
    "Cruz|Edwards|Collins|Reyes|Stewart|Morris|Morales|Murphy|Cook|Rogers|Gutierrez|Ortiz|Morgan|Cooper|"
    "Peterson|Bailey|Reed|Kelly|Howard|Ramos|Kim|Cox|Ward|Richardson|Watson|Brooks|Chavez|Wood|James|"
    "Bennett|Gray|Mendoza|Ruiz|Hughes|Price|Alvarez|Castillo|Sanders|Patel|Myers|Long|Ross|Foster|"
    "García|Rodríguez|Martínez|Hernández|López|González|Pérez|Sánchez|Ramírez|Gutiérrez|Muñoz|Peña|"
    "Nguyễn|Trần|Lê|Phạm|Hoàng|Võ|Đặng|O'Brien-Łukasz|O'Connor|D'Angelo|St. John|Van der Berg|"
    "Müller|Schröder|Weiß|Kowalski|Wiśniewski|Wójcik|Żukowski|Dąbrowski|Søndergaard|Åberg|Öztürk|Çelik|"
    "Yılmaz|Ó Súilleabháin|Mac Giolla Phádraig|Ní Bhriain|Dvořáková|Novák|Horváth|Kovačević|Łęcki|"
    "Zhang|Wang|Li|Chen|Liu|Singh|Khan|Kumar|Tanaka|Sato|Suzuki|Takahashi|Park|Choi|Jung|Abdullah|"
    "Haddad|Khoury|Cohen|Levi|Friedman|Goldberg|Rossi|Russo|Ferrari|Esposito|Bianchi|Romano|Colombo"
).split("|")
MIDDLE = tuple("ABCDEFGHIJKLMNOPRSTW") + ("", "", "", "", "Ángel", "Marie", "Lee", "Ann")

STREETS = (
    "Main St|Oak Ave|Maple Dr|Cedar Ln|Elm St|Park Ave|Washington Blvd|Lake Shore Dr|Pine St|Hillcrest Rd|"
    "2nd St|3rd Ave|Sunset Blvd|River Rd|Church St|Mill Rd|Highland Ave|Jefferson St|Lincoln Way|"
    "Martin Luther King Jr Blvd|Calle del Sol|Avenida José Martí|Calle Peña|Paseo de la Reina|"
    "Rue de l'Église|Camino Real|Ñandú Ct|Bahía Vista Dr|Côte Blanche Rd|Saint-Étienne St|"
    "Kaʻahumanu Ave|Ocean Pkwy|Broadway|Magnolia Ln|Dogwood Trl|Peachtree St NE|Bayou Ln|Prairie View Rd"
).split("|")
LINE2 = ("Apt", "Unit", "Ste", "#", "Apt", "Bldg")

# usps | state FIPS | county FIPS | SSA state (CCN prefix) | city | ZIP3 | weight
LOCATIONS = [
    (r[0], r[1], r[2], r[3], r[4], r[5], float(r[6]))
    for r in _rows("""
FL|12|086|10|Miami|331|4.0
FL|12|095|10|Orlando|328|2.5
FL|12|103|10|St. Petersburg|337|2.0
CA|06|037|05|Los Angeles|900|4.0
CA|06|073|05|San Diego|921|2.0
CA|06|085|05|San José|951|1.2
TX|48|201|45|Houston|770|3.0
TX|48|029|45|San Antonio|782|1.8
TX|48|141|45|El Paso|799|0.8
NY|36|061|33|New York|100|3.0
NY|36|047|33|Brooklyn|112|2.0
NY|36|029|33|Buffalo|142|1.0
PA|42|101|39|Philadelphia|191|2.0
PA|42|003|39|Pittsburgh|152|1.5
OH|39|035|36|Cleveland|441|1.5
OH|39|049|36|Columbus|432|1.2
IL|17|031|14|Chicago|606|3.0
MI|26|163|23|Detroit|482|2.0
NC|37|119|34|Charlotte|282|1.5
GA|13|121|11|Atlanta|303|1.8
AZ|04|013|03|Phoenix|850|2.2
NJ|34|013|31|Newark|071|1.5
WA|53|033|50|Seattle|981|1.5
MA|25|025|22|Boston|021|1.5
TN|47|157|44|Memphis|381|1.0
VA|51|760|49|Richmond|232|1.0
MD|24|510|21|Baltimore|212|1.0
MO|29|510|26|St. Louis|631|1.0
WI|55|079|52|Milwaukee|532|0.9
MN|27|053|24|Minneapolis|554|0.9
CO|08|031|06|Denver|802|0.9
CO|08|043|06|Cañon City|812|0.2
NM|35|001|32|Albuquerque|871|0.5
NM|35|039|32|Española|875|0.2
LA|22|071|19|New Orleans|701|0.7
KY|21|111|18|Louisville|402|0.7
AL|01|073|01|Birmingham|352|0.7
SC|45|019|42|Charleston|294|0.7
OK|40|109|37|Oklahoma City|731|0.6
OR|41|051|38|Portland|972|0.7
NV|32|003|29|Las Vegas|891|0.8
UT|49|035|46|Salt Lake City|841|0.5
IA|19|153|16|Des Moines|503|0.5
KS|20|173|17|Wichita|672|0.4
CT|09|003|07|Hartford|061|0.6
ME|23|005|20|Portland|041|0.3
HI|15|003|12|Honolulu|968|0.4
AK|02|020|02|Anchorage|995|0.2
WV|54|039|51|Charleston|253|0.4
PR|72|127|40|San Juan|009|0.4
PR|72|097|40|Mayagüez|006|0.2
PR|72|021|40|Bayamón|009|0.2
""")
]

# ---- beneficiary codes (CCLF8 domains) -----------------------------------------

RACE = ("0", "1", "2", "3", "4", "5", "6")  # unknown, white, black, other, asian, hispanic, N. Am. native
RACE_W = (0.5, 76.0, 10.0, 2.0, 4.0, 7.0, 0.5)
DUAL = ("NA", "01", "02", "03", "04", "05", "06", "08")
DUAL_W = (80.0, 3.5, 9.0, 2.0, 1.5, 0.2, 1.3, 2.5)
DUAL_FULL = {"02", "04", "08"}
BUYIN = ("0", "1", "2", "3", "A", "B", "C")
MDCR_STUS = ("10", "11", "20", "21", "31")
ENTLMT_RSN = ("0", "1", "2", "3")
ESRD = ("0", "Y")
SEX = ("0", "1", "2")

# ---- diagnoses (ICD-10-CM, no dot) -------------------------------------------------

# code | prevalence weight | SUD (42 CFR Part 2: alcohol/drug use disorders; nicotine is not)
DX = _rows("""
I10|55
E785|45
E119|18
E1122|5
E1165|4
I2510|15
I4891|8
I5022|4
I509|5
N1830|8
J449|10
J45909|4
F329|10
F419|8
M170|6
M5450|8
E039|12
K219|12
G309|3
F0390|4
G4733|6
E669|8
M810|6
H409|4
N400|6
D649|6
Z794|5
Z7901|5
G629|3
I739|3
M069|2
C61|2
C50911|2
C3490|1
G20|1
H2513|5
E559|6
F17210|8
Z9181|3
I129|6
F1020|0|Y
F1120|0|Y
F1220|0|Y
F1420|0|Y
F1520|0|Y
F1920|0|Y
F10239|0|Y
F1110|0|Y
Z0000|0
Z1231|0
Z1211|0
Z23|0
R0789|0
R109|0
M25561|0
R0602|0
J069|0
N390|0
R42|0
Z79899|0
R7303|0
L03115|0
S0990XA|0
W19XXXA|0
A419|0
J189|0
I130|0
I5033|0
N179|0
J441|0
I214|0
I639|0
S72001A|0
K5792|0
M1711|0
M1611|0
E871|0
K922|0
U071|0
R55|0
R079|0
R509|0
R4182|0
R531|0
R1084|0
Z4789|0
Z96651|0
Z5111|0
G8929|0
R296|0
Z7189|0
""")
DX_CODES = tuple(r[0] for r in DX)
DX_INDEX = {c: i for i, c in enumerate(DX_CODES)}
DX_SUD = tuple(len(r) > 2 and r[2] == "Y" for r in DX)
DX_CHRONIC_W = tuple(float(r[1]) for r in DX)
SUD_CODES = tuple(i for i, s in enumerate(DX_SUD) if s)


def dx(*codes: str) -> list[int]:
    return [DX_INDEX[c] for c in codes]


ADMIT_DX = dx("R0602", "R079", "R509", "R4182", "R531", "R1084", "R55", "R0789")
POA = ("Y", "N", "U", "W", "1")

# ---- ICD-10-PCS procedures ------------------------------------------------------------

PCS = (
    "0SRD0JZ 0SRC0JZ 0SRB0JZ 0QS634Z 4A023N7 B2111ZZ 02703ZZ 0DJ08ZZ 0DB68ZX 5A1955Z 3E033GC "
    "0FT44ZZ 0DTJ4ZZ 30233N1 BW03ZZZ 0BH17EZ 3E0436Z 5A1D70Z"
).split()
PCS_INDEX = {c: i for i, c in enumerate(PCS)}

# ---- HCPCS / CPT ------------------------------------------------------------------------


class Hcpcs(NamedTuple):
    code: str
    fee: int  # cents, national-average allowed (physician) or OPPS/DMEPOS payment
    betos: str
    tos: str  # CMS type of service (CLM_FED_TYPE_SRVC_CD)
    units: int  # typical units per line
    apc: str  # OPPS APC (outpatient lines), "" if none


HCPCS = [
    Hcpcs(r[0], int(round(float(r[1]) * 100)), r[2], r[3], int(r[4]), r[5] if len(r) > 5 else "")
    for r in _rows("""
99202|75|M1A|1|1
99203|112|M1A|1|1
99204|167|M1A|1|1
99212|57|M1B|1|1
99213|92|M1B|1|1
99214|131|M1B|1|1
99215|184|M1B|1|1
G2211|16|M1B|1|1
G0438|170|M5D|1|1
G0439|133|M5D|1|1
99223|280|M2A|1|1
99232|100|M2B|1|1
99233|145|M2B|1|1
99239|130|M2B|1|1
99284|120|M3|1|1|05024
99285|175|M3|1|1|05025
99309|105|M4B|1|1
99308|80|M4B|1|1
36415|3|T1A|5|1
80053|11|T1B|5|1
85025|8|T1D|5|1
80061|13|T1H|5|1
83036|10|T1H|5|1
84443|17|T1H|5|1
82306|30|T1H|5|1
81001|3|T1C|5|1
82570|5|T1H|5|1
84153|18|T1H|5|1
87086|9|T1G|5|1
93000|16|T2A|5|1
93010|8|T2A|1|1
93015|75|T2B|5|1
71046|30|I1A|4|1|05521
73562|37|I1B|4|1|05521
70450|110|I2A|4|1|05522
74177|300|I2B|4|1|05572
70551|230|I2C|4|1|05523
93306|220|I3C|4|1|05524
77067|136|I1C|C|1|05521
76700|110|I3B|4|1|05522
20610|60|P5C|2|1
J3301|2|O1E|1|4
17000|64|P6A|2|1
11721|45|P6C|2|1
92014|140|M5C|1|1
92134|40|I4B|4|1
66984|550|P3D|2|1
45378|200|P8D|2|1|05312
97110|30|P7A|W|3
97140|28|P7A|W|2
97161|100|P7A|W|1
97530|35|P7A|W|2
90834|105|M5B|T|1
90837|155|M5B|T|1
99408|35|M5B|1|1
G2086|400|M5B|1|1
A0427|480|O1A|D|1
A0425|8|O1A|D|10
90662|70|O1G|V|1
G0008|33|O1G|V|1
G0463|120|M5D|1|1|05012
96413|140|O1D|1|1|05694
J9035|50|O1D|1|40
G0378|30|M5D|1|8|08011
93798|110|P5A|1|1|05771
J1885|1|O1E|1|2
E0601|85|D1C|R|1
A7030|90|D1F|9|1
A7035|30|D1F|9|1
A7037|25|D1F|9|1
A7038|3|D1F|9|2
E1390|170|D1C|R|1
E0431|20|D1C|R|1
A4253|30|D1F|9|2
A4259|10|D1F|9|2
E0143|80|D1A|P|1
K0001|40|D1D|R|1
E0260|120|D1B|R|1
L1833|500|D1G|P|1
L3908|45|D1G|P|1
B4035|6|D1E|E|30
E0570|50|D1C|P|1
J7613|1|O1E|9|60
G0299|70||1|4
G0151|80||1|4
G0152|80||1|4
G0156|35||1|4
G0155|60||1|2
Q5001|0||1|1
""")
]
HCPCS_INDEX = {h.code: i for i, h in enumerate(HCPCS)}
# Product (NDC) of the drug HCPCS codes billed on professional lines.
HCPCS_NDC = {"J3301": "00003029320", "J9035": "50242006001", "J7613": "00487950101", "J1885": "00409379501"}
MODIFIERS = ("25", "26", "TC", "59", "95", "GP", "KX", "RR", "NU", "KS", "LT", "RT", "GA", "RH", "QW", "GT", "JW")


def hc(*codes: str) -> list[int]:
    return [HCPCS_INDEX[c] for c in codes]


def md(code: str) -> int:
    return MODIFIERS.index(code)


# CMS provider specialty codes used below.
SPECIALTY = (
    "01 08 11 06 13 29 39 46 07 18 20 48 34 30 69 93 65 62 26 59 50 97 A5 "  # physician / supplier
    "54 87 B4"  # DME suppliers
).split()


def sp(*codes: str) -> list[int]:
    return [SPECIALTY.index(c) for c in codes]


PLACE = ("11", "21", "22", "23", "31", "81", "12", "10", "41", "19", "24", "32")  # CMS place of service


def pos(*codes: str) -> list[int]:
    return [PLACE.index(c) for c in codes]


class Profile(NamedTuple):
    """A kind of professional claim: who bills it, where, and what lines it carries."""

    name: str
    weight: float
    specialties: list[int]
    places: list[int]
    lines: tuple[int, int]  # min, max lines
    first: list[int]  # HCPCS pool of line 1
    rest: list[int]  # HCPCS pool of lines 2..
    modifier: list[int]  # modifier pool of line 1 (-1: none)
    days: int  # lines on consecutive days (hospital stays)
    acute: list[int]  # acute diagnosis pool (in addition to the beneficiary's conditions)
    referred: bool  # has a referring provider


_NO_MOD = [-1]
CARRIER = [
    Profile("office", 30, sp("01", "08", "11", "50", "97"), pos("11", "11", "11", "19"), (1, 3),
            hc("99213", "99213", "99214", "99214", "99212", "99215", "99203", "99204"),
            hc("36415", "93000", "G2211", "G2211", "81001", "90662"), _NO_MOD + [md("25")], 0,
            dx("Z0000", "R0789", "R109", "J069", "R42", "R7303", "M25561", "Z79899"), False),
    Profile("specialist", 12, sp("06", "13", "29", "39", "46", "07", "34", "20"), pos("11", "19", "22"), (1, 3),
            hc("99213", "99214", "99214", "99204", "99215"),
            hc("93000", "93306", "20610", "J3301", "17000", "93015"), _NO_MOD, 0,
            dx("R0789", "R0602", "M25561", "G8929", "R296"), True),
    Profile("ophthalmology", 4, sp("18"), pos("11", "24"), (1, 3),
            hc("92014", "92014", "66984", "99213"), hc("92134", "92134"), _NO_MOD + [md("LT"), md("RT")], 0,
            dx("H2513", "H409"), False),
    Profile("podiatry", 3, sp("48"), pos("11", "32"), (1, 2), hc("11721", "99213"), hc("11721"),
            _NO_MOD, 0, dx("G629", "I739"), False),
    Profile("lab", 20, sp("69"), pos("81"), (1, 6),
            hc("80053", "85025", "80061", "83036", "84443", "36415"),
            hc("80053", "85025", "80061", "83036", "84443", "82306", "81001", "82570", "84153", "87086"),
            _NO_MOD + [md("QW")], 0, dx("Z79899", "R7303", "E559", "N390"), True),
    Profile("imaging", 8, sp("30"), pos("22", "11", "21", "23"), (1, 2),
            hc("71046", "71046", "73562", "70450", "74177", "70551", "93306", "77067", "76700"),
            hc("71046", "73562"), [md("26")], 0, dx("R0602", "R0789", "R109", "M25561", "Z1231", "S0990XA"), True),
    Profile("hospital", 6, sp("11", "01", "06", "29"), pos("21"), (1, 5), hc("99223"),
            hc("99232", "99232", "99233", "99239"), _NO_MOD, 1,
            dx("A419", "J189", "I5033", "N179", "J441", "I214", "I639", "K922", "U071"), False),
    Profile("emergency", 3, sp("93"), pos("23"), (1, 2), hc("99284", "99285"), hc("93010", "93010"),
            _NO_MOD + [md("25")], 0, dx("R0789", "R079", "R55", "S0990XA", "W19XXXA", "R1084", "R4182"), False),
    Profile("therapy", 5, sp("65"), pos("11", "12", "31"), (2, 4), hc("97110", "97161"),
            hc("97110", "97140", "97530"), [md("GP")], 0, dx("M25561", "M5450", "M170", "R296", "Z9181"), True),
    Profile("nursing_facility", 2, sp("11", "50"), pos("31", "32"), (1, 1), hc("99309", "99308"), [],
            _NO_MOD, 0, dx("G309", "F0390", "R296"), False),
    Profile("psychotherapy", 2, sp("62", "26"), pos("11", "10"), (1, 1), hc("90834", "90837"), [],
            _NO_MOD + [md("95")], 0, dx("F329", "F419"), False),
    Profile("ambulance", 1.5, sp("59"), pos("41"), (2, 2), hc("A0427"), hc("A0425"), [md("RH")], 0,
            dx("R0789", "R55", "S72001A", "I639", "R4182"), False),
    Profile("vaccine", 3, sp("01", "08", "A5"), pos("11", "19"), (2, 2), hc("90662"), hc("G0008"), _NO_MOD, 0,
            dx("Z23"), False),
    Profile("telehealth", 2, sp("01", "08", "11"), pos("10"), (1, 1), hc("99213", "99214"), [], [md("95")], 0,
            dx("R42", "J069", "Z79899"), False),
    Profile("wellness", 3, sp("01", "08", "11"), pos("11"), (1, 2), hc("G0439", "G0439", "G0438"),
            hc("99213", "36415"), _NO_MOD, 0, dx("Z0000"), False),
]
# Offered only to beneficiaries with a substance use disorder (drawn instead of `office`).
CARRIER_SUD = Profile("sud_treatment", 0, sp("26", "01", "50"), pos("11", "10"), (1, 2), hc("G2086", "99408"),
                      hc("99213", "36415"), _NO_MOD, 0, [], False)

DME = [
    Profile("cpap", 25, sp("54", "B4"), pos("12"), (1, 4), hc("E0601", "A7030", "A7035"),
            hc("A7030", "A7035", "A7037", "A7038"), [md("RR"), md("KX")], 0, dx("G4733"), True),
    Profile("oxygen", 20, sp("54"), pos("12"), (1, 2), hc("E1390", "E1390", "E0431"), hc("E0431"),
            [md("RR")], 0, dx("J449", "I509"), True),
    Profile("diabetic", 30, sp("87", "54"), pos("12"), (1, 2), hc("A4253"), hc("A4259"), [md("KS"), md("KX")],
            0, dx("E119", "E1165", "E1122"), True),
    Profile("mobility", 12, sp("54"), pos("12"), (1, 2), hc("E0143", "K0001", "E0260"), hc("E0143"),
            [md("NU"), md("RR")], 0, dx("M170", "R296", "Z9181", "G20"), True),
    Profile("orthotic", 6, sp("B4", "54"), pos("12", "11"), (1, 1), hc("L1833", "L3908"), [],
            [md("LT"), md("RT")], 0, dx("M170", "M25561"), True),
    Profile("enteral", 3, sp("54"), pos("12", "32"), (1, 1), hc("B4035"), [], _NO_MOD, 0, dx("G309", "R296"), True),
    Profile("nebulizer", 4, sp("54", "87"), pos("12"), (1, 2), hc("E0570"), hc("J7613"), [md("NU")], 0,
            dx("J449", "J45909"), True),
]

# ---- institutional ---------------------------------------------------------------------

# MS-DRG | relative weight | mean length of stay | principal dx | procedures | surgical
DRGS = [
    (r[0], float(r[1]), float(r[2]), dx(*r[3].split()), [PCS_INDEX[p] for p in r[4].split()], r[5] == "S")
    for r in _rows("""
871|1.90|6.5|A419|5A1955Z 30233N1|M
291|1.30|4.5|I5033 I130|BW03ZZZ|M
470|1.90|2.2|M1711 M1611|0SRD0JZ 0SRC0JZ 0SRB0JZ|S
190|1.15|4.0|J441|5A1D70Z|M
193|1.30|4.8|J189 U071|3E033GC|M
683|0.90|4.0|N179|3E0436Z|M
690|0.80|3.5|N390|3E033GC|M
065|1.00|3.8|I639|BW03ZZZ|M
481|2.10|5.5|S72001A|0QS634Z|S
280|1.70|4.5|I214|4A023N7 B2111ZZ 02703ZZ|S
378|1.00|3.6|K922|0DJ08ZZ 0DB68ZX|M
312|0.80|2.6|R55|BW03ZZZ|M
309|0.80|3.0|I4891|B2111ZZ|M
392|0.80|3.3|K5792|0DJ08ZZ|M
418|1.70|3.5|K5792|0FT44ZZ 0DTJ4ZZ|S
""")
]
DRG_CODES = tuple(r[0] for r in DRGS)
DRG_W = (14, 12, 8, 8, 9, 6, 6, 6, 4, 5, 5, 5, 6, 4, 2)

REV = (
    "0120 0191 0200 0250 0258 0270 0300 0301 0305 0320 0350 0360 0370 0410 0420 0421 0424 0430 0431 "
    "0440 0450 0510 0551 0561 0571 0610 0636 0651 0710 0730 0762 0943 0022 0023 0335 0402"
).split()


def rev(*codes: str) -> list[int]:
    return [REV.index(c) for c in codes]


class Line(NamedTuple):
    """A revenue center line kind: revenue code and its HCPCS pool (-1: none)."""

    rev: int
    hcpcs: list[int]


def _ln(r: str, *codes: str) -> Line:
    return Line(REV.index(r), hc(*codes) if codes else [-1])


class InstProfile(NamedTuple):
    name: str
    weight: float
    first: list[Line]  # line 1 pool
    rest: list[Line]  # lines 2.. pool
    lines: tuple[int, int]
    dx: list[int]  # principal diagnosis pool (besides the beneficiary's conditions)


OUTPATIENT = [
    InstProfile("emergency", 20, [_ln("0450", "99284"), _ln("0450", "99285")],
                [_ln("0300", "80053"), _ln("0305", "85025"), _ln("0320", "71046"), _ln("0350", "70450"),
                 _ln("0636", "J1885"), _ln("0730", "93000"), _ln("0258")], (2, 7),
                dx("R0789", "R079", "R55", "S0990XA", "R1084", "R4182", "N390")),
    InstProfile("clinic", 25, [_ln("0510", "G0463")], [_ln("0300", "80053"), _ln("0730", "93000")], (1, 3),
                dx("Z79899", "R42", "M25561")),
    InstProfile("laboratory", 22, [_ln("0301", "80053"), _ln("0305", "85025")],
                [_ln("0300", "36415"), _ln("0301", "80061"), _ln("0301", "83036"), _ln("0301", "84443")], (1, 5),
                dx("Z79899", "R7303", "E559")),
    InstProfile("imaging", 15, [_ln("0320", "71046"), _ln("0350", "74177"), _ln("0610", "70551"),
                                _ln("0402", "76700"), _ln("0320", "77067")], [_ln("0320", "73562")], (1, 2),
                dx("R0602", "R109", "Z1231", "M25561")),
    InstProfile("infusion", 4, [_ln("0335", "96413")], [_ln("0636", "J9035"), _ln("0258")], (2, 3),
                dx("C3490", "C50911", "Z5111")),
    InstProfile("therapy", 7, [_ln("0420", "97110"), _ln("0424", "97161")],
                [_ln("0420", "97140"), _ln("0420", "97530"), _ln("0430", "97110")], (1, 4), dx("M170", "Z9181")),
    InstProfile("observation", 3, [_ln("0762", "G0378")], [_ln("0300", "80053"), _ln("0730", "93000"),
                                                          _ln("0350", "70450")], (2, 4), dx("R0789", "R55")),
    InstProfile("endoscopy", 3, [_ln("0360", "45378")], [_ln("0370"), _ln("0710"), _ln("0250")], (2, 4),
                dx("Z1211", "K5792")),
    InstProfile("cardiac_rehab", 1, [_ln("0943", "93798")], [], (1, 1), dx("I2510", "I214")),
]
INPATIENT_LINES = [_ln(r) for r in "0250 0258 0270 0300 0301 0305 0320 0350 0410 0420 0430 0636 0730".split()] + [
    _ln("0450", "99285"), _ln("0200")
]
SURGERY_LINES = [_ln("0360"), _ln("0370"), _ln("0710")]

# SNF PDPM and home health PDGM HIPPS codes (shape-correct samples).
SNF_HIPPS = "KAQD1 TBCD1 NACA1 KBED1 TCDD1 NHDE1 TDCA1 KCHD1".split()
HHA_HIPPS = "1AA11 1BB21 2CC31 1FC11 2HA21 1DB31 2AC11 1KB21".split()
SNF_LINES = [_ln("0250"), _ln("0270"), _ln("0300"), _ln("0420", "97110"), _ln("0430", "97530"), _ln("0440")]
HHA_LINES = [_ln("0551", "G0299"), _ln("0421", "G0151"), _ln("0431", "G0152"), _ln("0571", "G0156")]
HOSPICE_LINES = [_ln("0551", "G0299"), _ln("0561", "G0155"), _ln("0571", "G0156")]
SNF_DX = dx("Z4789", "Z96651", "I639", "S72001A", "J189", "I5033", "R296")
HHA_DX = dx("Z4789", "I509", "J449", "E119", "I639", "R296", "M170")
HOSPICE_DX = dx("G309", "F0390", "C3490", "I509", "J449", "N1830", "C61")

# MAC (Medicare Administrative Contractor) numbers: Part A and Part B workloads.
MAC_A = "01111 04111 05101 06101 07101 08101 10111 12101 13101 15101".split()
MAC_B = "01112 04112 05102 06102 07102 08102 10112 12102 13102 15102".split()
MAC_DME = "16013 17013 18003 19003".split()

# ---- Part D ---------------------------------------------------------------------------

# NDC (11 digits) | label | cost of a 30-day supply ($) | units per day | brand | SUD | chronic weight
DRUGS = [
    (r[0], r[1], int(round(float(r[2]) * 100)), float(r[3]), r[4] == "B", r[5] == "Y", float(r[6]))
    for r in _rows("""
00093505898|atorvastatin 40 mg|6|1|G|N|30
00093317105|amlodipine 5 mg|4|1|G|N|25
68180051301|lisinopril 10 mg|4|1|G|N|22
00378180001|levothyroxine 50 mcg|8|1|G|N|20
00093104801|metformin 500 mg|5|2|G|N|18
62175011843|omeprazole 20 mg|7|1|G|N|16
00093736598|losartan 50 mg|6|1|G|N|16
16714068302|simvastatin 20 mg|4|1|G|N|8
00228263611|gabapentin 300 mg|9|3|G|N|10
00172208380|hydrochlorothiazide 25 mg|3|1|G|N|9
00378459001|metoprolol succinate 50 mg|10|1|G|N|14
00054829925|furosemide 40 mg|4|1|G|N|9
65862060530|tamsulosin 0.4 mg|9|1|G|N|8
16714061201|sertraline 50 mg|6|1|G|N|8
62175061743|pantoprazole 40 mg|7|1|G|N|9
00591381219|rosuvastatin 10 mg|9|1|G|N|8
68382009305|carvedilol 12.5 mg|5|2|G|N|7
00378103201|donepezil 10 mg|8|1|G|N|4
60505265601|clopidogrel 75 mg|7|1|G|N|6
68180098403|montelukast 10 mg|8|1|G|N|5
00003089421|Eliquis 5 mg|600|2|B|N|8
50458058030|Xarelto 20 mg|580|1|B|N|4
00006027731|Januvia 100 mg|560|1|B|N|4
00597015230|Jardiance 10 mg|600|1|B|N|5
00169413212|Ozempic 1 mg/dose pen|980|0.1|B|N|4
00002143380|Trulicity 1.5 mg/0.5 mL|950|0.07|B|N|3
00173088710|Trelegy Ellipta|640|1|B|N|3
00078065920|Entresto 49-51 mg|650|2|B|N|2
00088222033|Lantus 100 unit/mL|300|0.5|B|N|3
12496120803|buprenorphine-naloxone 8-2 mg film|180|2|B|Y|0
00406117003|naltrexone 50 mg|60|1|G|Y|0
00093716401|amoxicillin 500 mg|8|3|G|N|0
00093006101|ciprofloxacin 500 mg|9|2|G|N|0
00591544301|prednisone 10 mg|4|2|G|N|0
00406012301|hydrocodone-acetaminophen 5-325 mg|12|4|G|N|0
""")
]
DRUG_ACUTE = [i for i, d in enumerate(DRUGS) if d[6] == 0 and not d[5]]
DRUG_SUD = [i for i, d in enumerate(DRUGS) if d[5]]
PHARMACY_TYPE = ("01", "05", "07")  # community retail, long-term care, mail order
DAW = ("0", "1", "2", "3", "4", "5", "7", "8", "9")
DAW_W = (90, 4, 2, 1, 0.5, 1, 0.5, 0.5, 0.5)
DISPENSING = ("P", "C")

# Inpatient, SNF, home health and hospice line plans (first line, then a pool).
INPATIENT = [
    InstProfile("medical", 0, [_ln("0120")] * 6 + [_ln("0200")], INPATIENT_LINES, (3, 9), []),
    InstProfile("surgical", 0, [_ln("0120")], INPATIENT_LINES + SURGERY_LINES * 3, (4, 10), []),
]
SNF = InstProfile("snf", 0, [_ln("0022")], SNF_LINES + [_ln("0120")] * 3, (2, 5), SNF_DX)
HHA = InstProfile("hha", 0, [_ln("0023")], HHA_LINES, (2, 5), HHA_DX)
HOSPICE = InstProfile("hospice", 0, [_ln("0651", "Q5001")], HOSPICE_LINES, (1, 3), HOSPICE_DX)
DAY_REV = rev("0120", "0191", "0200", "0022", "0651")  # units are days
STATUS = ("01", "02", "03", "06", "07", "20", "30", "40", "41", "50", "62")
IP_STATUS_W = (55, 2, 18, 15, 2, 0, 0, 0, 0, 3, 5)
ADMSN_TYPE = ("1", "2", "3", "9")
ADMSN_SRC = ("1", "2", "4", "5", "6", "D", "E", "F")
PRMRY_PYR = ("A", "B", "C", "D", "E", "G", "L")
NPMT_RSN = ("A", "B", "C", "N")
ANSI_GRP = ("CO", "PR")
ANSI_RSN = ("1", "2", "45")
