"""Place names the equivalence vetoes always read as names.

The lower-cased name veto (``cache.equivalence_text.swapped_name``) learns from a
reference corpus which words are written like names; that corpus is small, and some
places are seldom in it capitalised: "nigeria" has a capitalised share of 0 there and
"iceland" too, so "flights to nigeria" / "flights to niger" passed the veto as a
misspelling and the scorer gave it 0.77, which a threshold relaxed under load accepts.
Countries, their distinctive name parts ("zealand", "lanka"), continents, US states and
large cities are therefore names whatever the corpus says. Single tokens only, lower
case; words that are mostly something else ("nice", "reading", "mobile", "split",
"turkey" as food is kept: a swap needs a name on both sides) are left out.
"""

from __future__ import annotations


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


PLACES: frozenset[str] = _words(
    # Countries and the distinctive parts of multi-word ones.
    """
    afghanistan albania algeria andorra angola argentina armenia australia austria
    azerbaijan bahamas bahrain bangladesh barbados belarus belgium belize benin bhutan
    bolivia bosnia herzegovina botswana brazil brunei bulgaria burkina faso burundi
    cambodia cameroon canada chad chile china colombia comoros congo croatia cuba cyprus
    czechia denmark djibouti dominica ecuador egypt eritrea estonia eswatini ethiopia fiji
    finland france gabon gambia georgia germany ghana greece grenada guatemala guinea
    guyana haiti honduras hungary iceland india indonesia iran iraq ireland israel italy
    jamaica japan jordan kazakhstan kenya kiribati kosovo kuwait kyrgyzstan laos latvia
    lebanon lesotho liberia libya liechtenstein lithuania luxembourg madagascar malawi
    malaysia maldives mali malta mauritania mauritius mexico micronesia moldova monaco
    mongolia montenegro morocco mozambique myanmar burma namibia nauru nepal netherlands
    holland zealand nicaragua niger nigeria macedonia norway oman pakistan palau palestine
    panama paraguay peru philippines poland portugal qatar romania russia rwanda samoa
    marino arabia senegal serbia seychelles sierra leone singapore slovakia slovenia
    somalia lanka sudan suriname sweden switzerland syria taiwan tajikistan tanzania
    thailand timor togo tonga trinidad tobago tunisia turkey turkmenistan tuvalu uganda
    ukraine emirates uruguay uzbekistan vanuatu vatican venezuela vietnam yemen zambia
    zimbabwe scotland wales spain britain england
    """
    # Continents and regions.
    """
    africa antarctica asia europe oceania scandinavia balkans caribbean
    """
    # US states (single tokens; "new york" and the like by their distinctive part).
    """
    alabama alaska arizona arkansas california colorado connecticut delaware florida
    hawaii idaho illinois indiana iowa kansas kentucky louisiana maine maryland
    massachusetts michigan minnesota mississippi missouri montana nebraska nevada
    hampshire jersey mexico carolina dakota ohio oklahoma oregon pennsylvania
    tennessee texas utah vermont virginia washington wisconsin wyoming
    """
    # Large cities.
    """
    london paris berlin madrid rome milan vienna prague warsaw budapest amsterdam
    brussels lisbon dublin edinburgh manchester liverpool birmingham glasgow stockholm
    oslo copenhagen helsinki athens istanbul ankara moscow kiev kyiv cairo lagos nairobi
    johannesburg accra casablanca dubai doha riyadh tehran baghdad karachi lahore delhi
    mumbai bangalore bengaluru chennai kolkata hyderabad pune dhaka kathmandu colombo
    bangkok hanoi jakarta manila singapore beijing shanghai shenzhen guangzhou hongkong
    taipei seoul tokyo osaka kyoto sydney melbourne brisbane perth auckland toronto
    vancouver montreal ottawa calgary chicago boston seattle denver dallas houston austin
    atlanta miami orlando detroit philadelphia baltimore pittsburgh cleveland phoenix
    vegas angeles francisco diego portland nashville memphis honolulu havana lima bogota
    caracas santiago quito montevideo buenos aires brasilia rio paulo
    """
)
