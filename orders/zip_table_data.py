"""US ZIP -> state table, written by `orders.zip_table.zip_table_write` from zipcodes 3.0.0
(42789 ZIPs). Do not edit: write it again (see `orders/zip_table.py`)."""

# Bit n (byte n // 8, bit n % 8) set: the five-digit number n is a ZIP. zlib, base64.
KNOWN = (
    "eNqtegt8E1Xa95kkbYKUJixq0UJTlQU+RVoFLQp04oKg4lIvL6LLJVV3X1SUVgELtMkEYcXdZS27XtBFSHddF12E"
    "soJGLO0EEKuLNFWkAUo7Uwq00DaTkraTdGbO850zSW/ut+9vf9/3Db+GTGbO7bn8n//znIPQ/8uVqX8y8Rt3yZHf"
    "FB6e+sSzq8pXbxyutgG3YZz4Rd2mEbkofAgZU/SX8lUAKV2EglLJjqq4QhWMv1S6yjm5hT+FbkpZr/f1WiqqLVhT"
    "GRZ+TluQvxTckfLdB2PpM5t/gXFGbSwLoTIuCmfkOWihNfwYwkAfivoYotFvTCnMvYPZn8Sgy5/mB6xsSa11S5O5"
    "1XlVampaM/N0qt9I3ptRc3+FtraGMYxDYSBXJN2SOhK29L43y+Y3IDQOjS67aET7S6ogGvz1M7TnbNJ5lPNqyWF6"
    "VwtIzr3EMIi87AfM92rDyRckcUi1I8H6Jz+qi1SDYn4IbwBJuQCaEdkGZOcpAuXKoU9+QCIMFqlHllZAL9wh+Ca3"
    "Dx8qbY8FvMu4QT8YvowVLa8y/kgpe3vs+QXrjCgXQ54CwEGeOrt58BhYKl7bEgg0d4OqtXAjxww8GaMIXcO7oHGM"
    "7KS3Uy+AdB39MkfjtAczJOWA8BeeDrdxz4GlM7QRRBrrjsEkl/xYJV+sC6gLAoVcpCI13t0/6ZKJovzPgg/aOIw7"
    "WMZgILKSwNXLrxuum4/YLRj0xehN1Jf036gZhKvBqk+X3HiIemQ5JAwxuAyDDRk2gCyBWbcSFYRzIJvpoygXkcrx"
    "e6S9aB208jmTNCjPmoEBeLgAHd8U9wTsG9AfkIc8+1LCgQZW1Jsz6lhxzw2qwKG7QUgSvd9Oj0pe5SLAFDUt0VVP"
    "A/006fNuXTiSqEWEFJMUcP6xZFTk4STV7ogONzcHzC1Mv9gBNC+cJf8FtDZISujU8Y8AZgZm6B+kqNf+boKHTy8Y"
    "I/9snNEjgvnqzI2JNzGT3cBATmT2NDJ4U0zQMs5yM2lv81EYyxr/xkV1gomIJKiNnYOss3nkwYKGYQUQe1BAGmxD"
    "uV1V1Ukw1uYg3x1+ENLCnFGXgXvQS/lHft50ofMQ1h9g65jbHZEkuvbNRB921ZWYdFWaDOzD3aHebd3mVjMyxZVF"
    "nAYgZ8tjqy5vn/berGDsfvszvxGQ6WkMyejuNczkzJyrRWuYpw7odQkN9H/ts9TkbIbI5qO1yJMnATe2UHx6arhF"
    "Ur3A4cC1B+MmL0L8Ml/1k3xH/GsMFJZ56/zKPmnKDBU7WfR6242/2fRlB3EH1kTbWY17h02jCjSwV2CZjUj3x9gW"
    "BWp+rVK38KmMnz46wxstwaaBx+IQIQ7GRD/AzL35wZktCleUawrnEQnpDy5NQAOKJrOSga8fpHmPBpA7B2WScXlk"
    "0X+a+Mx/MZvv6YXl3mKHNmgI9RyH5Spo5zQQNC7XY+mHPipydZ0GPE/s1LNJqJguEcDl1B60eA3r4mM4Ikc4Djtr"
    "iQi2TqGWLrK0kSFh1G6ICU7g5SzAFxo4KOiB4b1CT5E5Ywjoe+AlGR/VSnlgrheUd4Espro6SvwcBLltmSL38JOL"
    "ESrUeHZNxFfkzRFPg/MU2EFfAxZyjRbbGDpTk7iSqAY/lsVTOTSW52ztNddNjyguEAeBmicUAwEkgSOCUSkklhAr"
    "sPqDS2Y0gm2+BNaYUQf9QVN8ic0GKD0N7mEFp873Gptw5RHk5+Ji9xqMaO/yUczQFqj9ZPEtN7/cpMVajA4BWl6W"
    "IJqebuthiPisfjUXMQbLQ/mqJvBQzx2qC9kRliEQllS+TYZeEiYy+3vqrXMLBSpWeBcufXLByOO99fZ+nQPYVeyE"
    "FZsy/Szv5qAZkshDw0FFAS2gceBKy3cgs8qBxNIWTx0kQBXc2B0kS59wmOU5zinzKk8jjliR1HzLvoXUObMsEAj6"
    "4mCZiuRi/DSUU0sVz7AVJZG6KiONOga1p0hY3aJ7aqbHV6OEA2YZSEDCByNLnHSGFupRI0wl4+5Nnqh3NVFpw5EG"
    "ihe9kxDqhDeL+qw97IYKqAwSD870vyD5YGn/AjndDYnlhMAIZlsC2JPV3n1KPY4IRM8iccLeM8ud3HbaYv0gj2I7"
    "N0W2Xr5V85GogYc5+h+0GlB96VJlQWUxWaKhK3yJh48554tgJDLPwhd8O5UFmgFNVtMOaxxuAFm5rn1Cn+2QZSUv"
    "1pp3y4LuagQTQYtoLDOD3HzYPl3ARPItxBDE4g4T6ptu6lkJxtpbp+gmmgDkrpvosy4ZJmgvxDHRT9Z6ssO9xDnd"
    "gxpl4gT1si9PkKCDWCtFGPNBqV7XIrJ5EsjQyXwcFQo6ejsfau3dEC5a62x/9NECkP8sfPfCRU3Z/KkuRPtAhBNV"
    "7mm1DyPi6EsV24kl8v35yoBTKL+ePOCFFxSoAnCbR1wEJU2AyvqYtwigUQNXW87iwscykeHDB88jk81hQV0jw3k0"
    "AFZtnfiHQtJ3GCxktpXSkwfZuouNPHCVz47j7i/p9v0FNO5zGaQZINV/gFTzvOZXYd2bmuuMJDj7dXPjjT110Zng"
    "WvlKyf7Vs7eOHzHzuns5a5+1V40as/fRGjAnD/a03OsH6dyI7HbtZ9P0pR2+8wzfUEHRGieJzbg0/+US9XwIThdk"
    "PP/Ur9ZYc5vLRxB9rAdzPwxbXkE1ICBbiid5b9OM2hw/8p8w2sIbSjEOrDAlEFokYL+GSZgTHokeL37w/j+UjZrA"
    "lB0Y/0T1g17nn68maspIqc0r4+reoNLOLKManBFv8fp72d9YISvRFRr7jpDbdKB45ESU+8/zx775aKMG767LFTEf"
    "s84oybDu9DkZykQ486vZmXWr4OKSDGBueqCL9hr9RCbGYVWh1HOcEUEabsj0JGY1Cj1EVkNiiqGkafogWa1D+YoM"
    "KaMWC1UFkzM/9M6W7j/ecC9DpSsAN/OCykVUPn+DNchJ6s1/+8ZqRJN3sAv3rhnx1sX3rVMzPaD+dMuppHlHXyY+"
    "+PmTX7ZNSNpR4VORaM4KSJVN7ueXsqskvPLx0x8fucocx/btD91tfy1BLz+qVt9UpXVq9dbvful4/B9f/3XTuPmz"
    "399k+Ph3zwT/dGB57zfvrPipXw2sWxXLfivn6U9SDe7lyLP5i7vWCKNFJO7MIk7gKMzxoIkjc5+P9v4qYTWicOui"
    "r26f9+GnNGoefuLGRztq3ZmhBfljLxGhGykOqcSAkme8/fq+4rZHgmeSmPzK3uqRRz2OX16fNYHClB82bFziIAkF"
    "YWvG/Bb1N1tfnToMrdg0/8VVhl9+of1id/GvTGjXxpqDpjmPmM0oe/uz1SXvXvdn3Wvtnn33nRuxOa/hV43IsPnv"
    "Hz2ELA+/dmpUCjq2/17La46b/0Tfevvkq+iRsndQMlXL4Mvvhnok6ZDgaIfc9Sbkv0v/vSoyKvz396Zooxy5yvNf"
    "sQVjwk1RIyHwFsyn33yfTjAZT4hCo7KzYibXXOnDhKqMYUw/tY1GG0Nwi2kwNSCoT8ILFcfzn8NWydXTXaQlo6+u"
    "5UvBGmb8kMdehN2xFmtg/ellCWbJNp4/ebHAZ26D45eAoBqhBoKA7eGIQICBO0TCXWc9sLiUJQGowIR5Cdygj8St"
    "UOLcqUCTwOg+P0BJxAmDVj7/qzv8ETnWcTlAyPY2rt33VaPZ6b2WxnPgEGOi2EmIXC2LV++//jbZGrTgHqEFLvAT"
    "5Ep8m1j9XdM1/wiMiRHnLsIQEYiDFUgK8NUuV5Dri8S5OcsrGyDrNh30JScolYkHKkhEHCe6KTeUyMcVDDksL0xH"
    "hWHhxZeNM3mZsLgWQqk4wg+dATt30qB+wv5wEdhvJpOujkO5BKykHVhJ6PGoqFIT+vV3/FPDUNkZT5Hm+jbucO0A"
    "DydoECor9w3QDz1sy40YYhisKZ57LP9rLsk7kEfB7JR+u2guFoRb+jUozBwQoqOeD/+TREQjtR5UK2l74lSznX9r"
    "0183P/vSXYoWE3obOqVR/XFwXH/ry6duQXPnO7s07wY4Ne8wncnd4tgWeG4ephAV+dKekkljFCfAPkGhHb+G2SuC"
    "pJ3Qb0Q+zdnOrfWAfUctg6Fgx+vpTUdnonmFzS4BPh0R8KkxaBIwoVY8IbTTnhQnSbBeOzWFpMNWkqBcS+0j62wn"
    "sBlTn2p/q0c3E2qXDuTwfPWx56bxaBiiXivYP6OYYTNhnQAcIfgn3FAaTu6djYtro/B7K0eE2DLZvznMlMtzRbAj"
    "tzwsCpgzI1y1pUZVQDgznU0iXW/1JgHbpHb6k4MF4SOQoU5VTwB0cD4CmIkogr3QCdZUG+eS+R+nvuG0i2z2EfCm"
    "mwb/jAtImEPh26b9jfUmv2JFDyjsGXNucm7mv1Y0cBEqbBVmhttjHienyN+17H7A7NGU3cc0ZPxcs+u8nXOd+3y2"
    "KIF1SEP6IUyBbndLSjx9lUvvUjmrORVzfvMlrtA/AcVp/RrQQNEhnOnzNVGyxtMVIVbpQs/sJEuWip/ivymdTnKV"
    "6WqhjsYeFM8/2mXCu5F4RLambGkxmtsZylmyJ7/78uWir3OtSNw1D/s05czWephHqEHBI4ZRti1+S2Y5yRACI1dH"
    "gvj9Q3ONhND7SW6k4d0E9J/YNn5QctEArOAlWuwoneA/9SpJu40tpw4CmS631pVIk0Rdzb08hKBiFRaeZeK85EcF"
    "oTv9OQbEmoSbkLBkYm8Vzv1qFOtypxKmH3LJqK34CsgtY/MzNS83Ro/OjjV1DeXF+2W5Sv18GFMG0K0VnPnz5aZz"
    "S8YbUFgqNreyHsp8v3ef4MAbCwlc1JisEzas/IMLMXruLipQCfhuNH8+xhJu/Fjmn6XlhIIZdt/bvuLVJNCjbLbm"
    "jFeQSdqdj3Jh016QYCD9vg8+bgmcNEerzCabLEuSIpoxbzZcRxZYxiw2XrgFaW8VLG3QWzQiMXev9R1lLglYYiqa"
    "gG1oERTfhCxkjeK8v69spvRPnIXQxoqA9+jdVCxlr7N3LHv8mQcz89GNg83nFHf29SnNXsBryE2sNdlQO3fXss1m"
    "Hdv3GScfzFrFlGOrf9/V9y4625u3+N0AMyP5azSue+RtI9MfecMP7OJM5l4Lmf8WRwYqGUjciVPOuTJrs+UqWo75"
    "YLuGDhw++ggRmt+U+tv3Pv/ggam2y7YPcUPB4T2ccmmDfXm0wGD6yRutP/U83PZ5Jrrecf/Re5kvT2wj2s38ejzK"
    "TnmH6WbQnEx0Q2ayAVksxhto5rnz5DeNd4UEWirCW571X7d7zzuT9ME37fntu3s2LgmTddjefG4rHNjw/L94XCoK"
    "Vyj7pE8v1GKGKGq7VOjxnabFwrpvK9A1xoeeTc64RB/A6teVsd8LpKvFWaM92TkHgdHT3lp0w0TmZ3pBjrQqm7/x"
    "xsTKlYXTw1NDU9E9I/99ARNLEp4eOboairjM86GK1l8HQS+knMUYtLGMxVa33mN55luVU2UI62bdvnqkH6SMIFVt"
    "fjWJZ5FeronWu3rBS/z7oekphDU857nCa2NLtOBdjQcNM0bnP3xbIiCIbrZJw4Jxh+v9NHT3mHMLtkXklYtyZLlN"
    "x1bKMsddkVLPNh9ire0L5jpbCOzxy57UkwiEvndXBpVODtv8BvfMBGbEKwWHSTSXFZcSipWXX4bZxo3IoXMOz/7L"
    "C51XCJgEHiw1Dy6FeXKjpjlb7WoTNWSxJmA9+F9OOLnISH1Jn8qXsckM6iBQpQEEy7meYsTJglZunLU5/7Vkkzi4"
    "XGIohM7HNBeUSdCd5ee3fR+di07wJAb2yMVnlWJJI3RGGgyWHkPU7Id9XlmZOQ75A8uhvFYrgcrOpExcAHDQF3ri"
    "6udv/f2F0+t5VOi+7umYcsSMB7XPb8itXSLMte8pKXRYfiKmXzNJlw6DWquTb57Rs/Q1xU0J1JERBkumCixJd6VD"
    "fB4PNc07jy+FJQ+MgSMEu/Vkz9GguTAEEPxgcHhS0RYYG0veO8tsRX476v6W2wrVUtiZhpnsDnhOERREi1peftvT"
    "oZVvN7HBQoNqF0PrZ9nmEDWIQa9Pm35/fIpV6chfRAlJQw4Sswo5Gbo7tECPxuLvzy0FCETBy0E5QdEOvrpFbhFg"
    "uc4yxnps7CXEiBqB187FnwS+jXx7o0GFEigKyZBOQD/Lg65Hfr6fJ3KbsHSfyYHKliJ6pxJ8tqCeCpKyk9sA+bup"
    "S7l2vMFv0yVEeSJIlTLll9LvK5r7lUgwcS3hTxJ8io2ipEk88NPiNX2e5EGEHYzUK14NE+9FCywMTWjJrDC4pG3O"
    "Kpf5hhDJob18RVG1Eqy4+B23B78fOR+UlWjT98rOmtlLj/FUeSEuXAWU95E0oBViWrxMQG3XJZBsRpB8eg2VTO06"
    "i8drzPZwyWhvg3ACWFDsJHdWgde2dkuSVCfh4hg4q4jJs2YkjhhsiQTYvpCWDxRUR95HIzFlZA2AI9Ct+6DvRy06"
    "ElGNBq9nugLPr+178AaAmqpzONQGERm4g1aPgfzg72zimP98l4TGWgWKRsnE12hlJfzibpXzxjVYMR0UnXXmu3X6"
    "KiTHS6wDrSdT0Al2shK3L5hqQJ8HLslgT0y3miOpfHMxDRPGf4dwGuyGbjssEwogtPLbljSsyZ6xEvyeDG6fbEOv"
    "jZ6NPhjaYtDSRGGtRBgfLiDRHw9+SfTifD3QO2pkM2ZzrAPlzz8SeqMBSyeEQ5FE7cuExOOlSikv8stCjyD0GUwp"
    "GdHc15XB1s8ZMBECHyDW4JVhkqc8shSWarqsU1UCRYTeF8RrncR6MGGZtEa2inNp0FJQb2fKmz4orYEIdxvkwVxi"
    "cKy0EnrfwFCZJurgOtfyktfwzpDF6gaXqFrp+RBA9ZjHq2NMHx+IP7gyKCsiA6i/gpWxbb2BYtww6MGyJuiNSTwP"
    "bWeYGpJV8bgh+EkenzXBj8sXgUQSeV8qekXQ4MD0imCgh1eaY6CAthy8SgHbS6zgsFvw3cpJ16J8v15XzJHI5MwG"
    "9KH62fcYEyLMZPozSAL1nWr9sZrzR1qYMjQLhdmw0Y+7igiBJP8UukuW3/fOVM5QSDLIUAXIQVoELHcL64oasRQz"
    "e5JRoYuYyBTMG6hdWYt97/6uwZluJG4Q/ipYZNfrWOK4rjveHF/fIHx2+symf2vtPRUTWhdJxVChGZCfRS8P2NWC"
    "BqU3vYYLcbRseOWLHR9vnR5auM6Mxpd1y9+zpz8doQknm60onV9101GOJ1lZMgrXnIS4PYrHHt3TPmVBLIvvKLZS"
    "H3zg85f+1QcbtSUAZ7pIok2AzDtzkJ9HQ18hbzcQdkRWDmenlu+KpxPuxdw8u+CK8B9oBrJy8D6WkO21aMsmgY8P"
    "IX6NffwB3GCmqNg4ci9kwaXtAnmx7BCRcp/r9QB3MQTlLyrEkIjsiVEJPEs0yGcMOKdpSGW70aunU7QYn9IaAGkx"
    "uVXSULJI0wwZeitWh2TplpSkgSbT+iK+7mpSEFwyCLQGcFibWd/ZyPXWS/uGizAiv39X7yfUiu2LYS7koonUnouK"
    "6rw0d0lWQYBSWExw3JqJ9q4FxRngqbtilXkKXxWvO+Y/TV1NEUZhs9+TqhZVbyJxpZobSzrdeRsr//nu+L4algS2"
    "k9MuqwBDan34EFTLZFE+qSgy/tWtxXMqSeQ5T1obnsdeAZwqT4Ar0yFxKg/uXVRfhoP/DTVjX48JWbkgerfNR8NM"
    "2dhw08arLwvEWZy0AkBs260JmkoGw8cWwVOqEpR5fkrPzj9YW6ks+cCa01ctfSg6xM/JalZ1wPuhCQQ09P1ayQW8"
    "ObFjwvOxtjjoh2HlDR3fzU2Nb6i8KQj3n66JDacPuL8189+X4PhWYxSOsHoKkBzlXpzBaESLXM6yHlnhsghQjn2n"
    "Hv6tfxCjJq+3lWMSwCT7kFBUe4JwL/b01jxa2XZdUJ3vhjIqX9Tjh93bInH9omUSNOr5rWYtAO2sxg7dRZ78jtm/"
    "7/RxmHUW0DMGBD12JUVvQ0g7ql10e9uCVx7XV/59038d6Eyp7SbsVZC4iCzP9C5LyxeyANxWXiYMxYDnGvptN3Xw"
    "Or7s5gPbgOs+rlzSzrW0DcwL6xtnhItv+RHZb1QE/qT5qgQRdgkxcMUtu1fgirI3ZpN8wmKb6M+5rVPbj0urQA/C"
    "jpoXSEwwxhW1H3z1QpJeKQI5+jcMjWYKyBe2R+s6tifiB794GCU7a+ItulaWs+n6yk3BM51YsC9Zyo/JPyJwyR6n"
    "T+neTRFOrOrQCvhd1j5jqFh5bYIBeFRnqFcJJ6FMXQj+OE+oqhZ6euRf644vgrxdyxt+q22LhvIHL7aMMDoSWTrk"
    "7SRI4YvQ2QPdslWnUXcI6Q4qKY+NGkMl51XULH1DgcRqrUpRCkh+n9olE4Yoay1CKu2XWAynncCcbqKcnKhslyFU"
    "Dl3AEnLtQIbF7JBzGa0VjVwb+v97keTdH9mGBaUeSowIsDXaI8MPUoFlSCiiyXzUDOnR2/1ZGajwYzexCInyHook"
    "Pd0NI16Xdy66+CdGbCEsUC+hHT8eKvKu5fmeIM+Ql1/XUeXV0dGkIeZj3B1riXn3w7EkIvZjzEVzOM09mlboWbyi"
    "oHzFgdUVC0+Jk0ZrBbE6LFF4760JQOBYEKrKn0VD+FHqNOT/uiEKNSU0GqCiEbVKdck1unPW7iCW5dYrCfnJ1k+u"
    "NEeKiFz9hGyQ60AVJ4CxlZbelKdWdu7UiM4a236rq5J8lPm3ybzrbKCz6HcdY3PV5QSKQpwkmIiidgEnzM2QK8qH"
    "o+QPf9ctsB141UcdSFwPr8rcrpVFy4hBJI/e65Kk6FZqa2Jazz+7fRDrZ/pBnkZ0Vw8tfwqEW1R+lvI0/rdncYin"
    "/ox4dCVCrwwTU1GAI6gps7pRP2Q/1HNcnUkGEZPDJyXpBeycqa8coZ/bD2T0dTVtvhTvzK0B4fqadpZkUqKz8gjc"
    "5FZQhv9W848HP9hYcFxn0qlIJCTzLCg36AWIydLJyVC+1ExDKvJPqZ/RV5kglP8X3kfjsXaq5JsppPPz0nUvek/h"
    "q1z0wVchGkY5UFwSF1qmKrU9hFxOKbyZVp3Jz1xX3sQoKnMMv99xmsHvulwqtwPLPro3Eibiel8/QOM/S3miB69H"
    "/it8CagMFIt6zPZrrhlnIzR59wQ6eZcBLSBhwpIP0qc/cBG7g4p9y450OCg81dVJxC7gUY9blqJ1hxUSBJZ+FeHb"
    "BdLLM7oSPD+Nua+fQoXYUVEiYxjbmyK+cVh7AXNdV1ak0gxEJJQYpgS+l3NFYezA1mYG2rvtjjsjBS0FWpKYQ/Cq"
    "4txzA5vFiWtoodFHwFknq92cZH68KUZ374hB/LFObexi9a0DKG4RNKv6QsjKxXqEJ1H0mLTeulmZpaOP4cn+rkIM"
    "8rvZ/W1Qb07shvvHeaWAloqhjfVwdUDjU/4ByD0YFrbbB8+q6OuYQme1X7vUZgelzUBL47QAizm6sW7L80BvM8iC"
    "TOAJNIEjaSdrtYgRus1A/lYevNNPZLVGLp2R7X+/OH7eogt8+kL3wAu7vNwaaWEzxFqga5R+SuZh083EdveGqiq2"
    "x7fiPGmu1OOB3tO5QGe1/h6Esg3EXie1BjubZZ77ifTjVCYkVBvb1SkNXJp8p06etHYlkeNwGplonpG5xhElfi64"
    "5T6mvxLA7LcUxGv6ZN5n7MqmV43trZwp1ThQv4py0KDswriUuXiIhW6Q4hEz9Wx4fbUrDtUkfgSUiNSu33xG2ILd"
    "iMJJ/WdYJJRkMqCJ2B5dXqfU1Xx099sZdKcafJXxxRreCwsV3rviBBIhRegfvL2h3zpEKxrgAMnv7a1WJNn8n2N7"
    "SH9XPeg3Dj7sQQNLV+gWlDDZTAeqOtMnVMPi8A9Wa6Lw67Bf19/mzldsjt4lxgRJde3KGJRte+CO/tLkJCwlxJi8"
    "BhkGaK0g9OvNjT8rgXVqk2f1ZSR6FvLdsiu+Xrc/XLGUE2rZOPq4PlbY+IOe945pBK+mnL/tEBJ5nu4RZOsG44am"
    "PBKRcyDnX4qAsn78iO7bt9CyxO76JzNTbE96DIm6mz5d+kJfhK06Mfi8z6ICWNQ3XULuQFNODI8fBOJoGgZq7ND/"
    "UIHUz0t0kNjYgaxILN2OSdtsk9+MIX6OoFKincwCvSzXC7+4bkispSqLCXE1h2hsKO6e7Y/bFXE6mIk8hh8lih5G"
    "g76zS7mvyRFBK/yfDUM0WgmkJHaq3Xej9r7mfmEE47l6+Oj/SzLRAyRYwvTYw4yFTJdnLWj9nEzHDceGUOf8wxUS"
    "gyyZ2XT85P1UAR490hGmz/M7Koq6LwNK6jPVuD7yxsB3K4wJg9urMINi1MdKn9inhyEIygUDQ/gfEriuvrdSJ2X7"
    "mbSu79L1rlbfbeqDX8O3Bcd3DOwTkMSdw0TgnOU/WSuTafiRzn2wMvu+cVf6D7Fx43e88tshIdWvDtqUITEYZLtu"
    "i03wO3pyciLdcnltiKI2mQdGSfWEg/GJW/4PBhe/pEtUaraEdMbnhg9t2BkI573AqE0wwJfyB1ejhhx7w2nhQ83M"
    "mDV+whTE4+zwNbVsfDDc4vBYu2+gX9cPGf6f9n1HUJ5eRiVdlayLJwOOfR48N988UGH5oyxdqQZ+dMTpxex6fW/Z"
    "gUyeNieaPzC4MABu+V1jxuAvuAbMXyO3ZQycJkWXelhDVBRINmK/D71ToHJX7jnDwnH3zCbqXcJzAYC845CaUlvj"
    "9QIscXO2TEI4FC6ve40yd6eEtY3DBo4n4eQxv/GxO8aI0ja1zsvRg34IprkuApMZP8ZUSFhGffMrHGdSQJSGCh7j"
    "zkN2OwoTWea34kKjyebQy2ce/JaW1wGNcqPWMUbk+9YU5lAoLewiAOIzWiwofxacFS61OK0o8+gfMImoGLiV3FVU"
    "Vi4w3z7PMiVqPxpvG1cnk58xDO6ovSdV941x7eBsJYPPNV0yijSBhoBgf8dg80SHo/zKzoXS5xc1SZowtGbZf53D"
    "OoxRAMIxDLTUaFijHzDjmEEnGhkb6tsGLGOsWpYbs2tVK6HOUFWtuNXOAGH1ZV2kl5m1MGoq8qdhiEJOC+inzd4n"
    "A7T4BE6RoSoTvw1Q4SZrH9Wy+pznyytPBLFAIuHNFj2lKtLoAqA8M2vh+idTxElEjH56WpOzTrNZCVX40AFakEyV"
    "9LjdWCMpFdIJQVIaO2EX3b2O1Ll0OYGcS+ZuWbr7F6PRX87/dv6IUhX9VXOyNFFIQVsSWoC15rOgZZlIlP+a0Kp/"
    "mHOTr4BUE/2AgxaOzobkaBVEPM5o/bIqPTw7Kq5Kjx5iGJMeWIisc6RgffQeg6hCFfjYfh9UTiSpIw4yeSUdMKFn"
    "T4fwrAw++RoM24hyQZKUIBDc0zS+76wzCuf1+aQYZcxqlj+o3xpW7XBiLml5ca6LGMN/Dz5hSmQiqdKJrM23E5Dp"
    "WXfr1gdXHh8f+bb3hjAoFTwcB0HbcGQE8IT8gCYLHK4oOHRY/bWtNNMwVeJHnazklmgkOYUK7FZ8l3hrWLCqQ7Hk"
    "1WiblqPw+sEe8S5U0AMN8TmuK4aQr+8QWxt2Szzh7SvuMpBZeUciNJrmWugZhJw7d3I+qyWesQwqsWJ7sg1Dr8Jj"
    "j0rXURGv+5yDa3TuSxWJUkdnF6QbEwaH/CFjIgCg/w3lmMGX"
)

# (first ZIP of a run, the states every ZIP from it to the next run's serves)
RUNS = (
    (501, "NY"),
    (601, "PR"),
    (801, "VI"),
    (901, "PR"),
    (1001, "MA"),
    (2801, "RI"),
    (3031, "NH"),
    (3901, "ME"),
    (5001, "VT"),
    (5501, "MA"),
    (5601, "VT"),
    (6001, "CT"),
    (6390, "NY"),
    (6401, "CT"),
    (7001, "NJ"),
    (9000, "AE"),
    (9905, "NJ"),
    (9908, "AE"),
    (9980, "NJ"),
    (10001, "NY"),
    (15001, "PA"),
    (19701, "DE"),
    (20001, "DC"),
    (20101, "VA"),
    (20201, "DC"),
    (20588, "MD"),
    (20590, "DC"),
    (20598, "VA"),
    (20599, "DC"),
    (20601, "MD"),
    (22003, "VA"),
    (24701, "WV"),
    (27006, "NC"),
    (29001, "SC"),
    (30002, "GA"),
    (32003, "FL"),
    (34000, "AA"),
    (34101, "FL"),
    (35004, "AL"),
    (37010, "TN"),
    (38601, "MS"),
    (39813, "GA"),
    (40003, "KY"),
    (43001, "OH"),
    (46001, "IN"),
    (48001, "MI"),
    (50001, "IA"),
    (53001, "WI"),
    (55001, "MN"),
    (56901, "DC"),
    (57001, "SD"),
    (58001, "ND"),
    (59001, "MT"),
    (60001, "IL"),
    (63001, "MO"),
    (66002, "KS"),
    (68001, "NE"),
    (70001, "LA"),
    (71601, "AR"),
    (72643, "MO"),
    (72644, "AR"),
    (73001, "OK"),
    (73301, "TX"),
    (73401, "OK"),
    (73960, "TX"),
    (74001, "OK"),
    (75001, "TX"),
    (80001, "CO"),
    (82001, "WY"),
    (83201, "ID"),
    (83414, "WY"),
    (83415, "ID"),
    (84001, "UT"),
    (85001, "AZ"),
    (87001, "NM"),
    (88510, "TX"),
    (88888, "DC"),
    (88901, "NV"),
    (90001, "CA"),
    (96200, "AP"),
    (96701, "HI"),
    (96799, "AS"),
    (96801, "HI"),
    (96910, "GU"),
    (96939, "PW"),
    (96941, "FM"),
    (96950, "MP"),
    (96960, "MH"),
    (97001, "OR"),
    (98001, "WA"),
    (99501, "AK"),
)
